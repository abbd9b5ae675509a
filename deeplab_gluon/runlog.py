"""The run's JSON-lines log, and the PNG of its loss and mIoU curves."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import List


class RunLog:
    """Appends one JSON object per line to ``path`` and flushes it, so a crash loses no line."""

    def __init__(self, path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"type": kind, "time": round(time.time(), 3), **fields}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def run_folder_of(checkpoint_path) -> Path:
    """The run folder of a checkpoint file, where its ``log.jsonl`` is: ``run/checkpoints/iter-N.ckpt`` -> ``run``."""
    folder = Path(checkpoint_path).parent
    return folder.parent if folder.name == "checkpoints" else folder


def read_log(path) -> List[dict]:
    """Records of a JSON-lines log; a last line cut short by a crash is skipped."""
    records = []
    with open(path) as handle:
        for line in handle:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def plot_curves(log_path, png_path) -> Path:
    """Training loss and learning rate against iteration, and validation mIoU / pixAcc, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    figure, (loss_axis, val_axis) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        iterations = [r["iteration"] for r in train]
        loss_axis.plot(iterations, [r["loss"] for r in train], color="tab:blue", label="loss")
        lr_axis = loss_axis.twinx()
        lr_axis.plot(iterations, [r["lr"] for r in train], color="tab:gray", linestyle="--", label="lr")
        lr_axis.set_ylabel("learning rate")
    loss_axis.set(xlabel="iteration", ylabel="training loss", title="Training")
    if val:
        iterations = [r["iteration"] for r in val]
        val_axis.plot(iterations, [r["mIoU"] for r in val], marker="o", label="mIoU")
        val_axis.plot(iterations, [r["pixAcc"] for r in val], marker="s", label="pixel accuracy")
        val_axis.legend(loc="lower right")
    val_axis.set(xlabel="iteration", ylabel="score", title="Validation", ylim=(0, 1))
    figure.tight_layout()
    png_path = Path(png_path)
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path
