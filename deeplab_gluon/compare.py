"""Several trained models side by side, as an HTML report one opens from disk.

    python -m deeplab_gluon.compare runs/demo/phase2 runs/demo_vortex/phase2 --report runs/demo/compare
    python -m deeplab_gluon.compare a.eval-val.json b.eval-val.json c.eval-val.json --report cmp --labels A,B,C

Each input is a run folder (its newest checkpoint's evaluation, as ``evaluate --checkpoint RUN`` writes it
beside the checkpoint) or an evaluation JSON file (``evaluate ... --output FILE``). The first input is the
reference: the report shows each model's headline scores, the training curves of the runs that have a
``log.jsonl`` (after those of the runs they were initialised from), per-class IoU with each model's difference to the first (table and grouped bars), and,
for a model scored on the same images as the first, the paired per-image mIoU difference with a
bootstrap 95 % interval, which tells a real win from noise on a small val set.

The models must have the same class list. Evaluation JSON written before per-image scores (no
``format`` field) is refused, with the command that rewrites it.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .cli import UsageError, flag, output_problem, run_job
from .report import EVALUATION_FORMAT, ComparedEvaluation, write_comparison_report
from .runlog import run_folder_of

PROG = "compare"
MAX_INPUTS = 6  # the report's colours and tables stay readable up to here
_EVALUATION_NAME = re.compile(r"(?:iter-(\d+))?[^/]*\.ckpt\.eval-([^.]*)\.json$")


@dataclass
class CompareConfig:
    """Command-line settings of ``python -m deeplab_gluon.compare``."""

    inputs: List[Path] = field(default_factory=list, metadata=flag(
        f"run folders (their newest evaluation) or evaluation JSON files, 2 to {MAX_INPUTS}; the first is the "
        "reference the others are compared with", positional=True, metavar="RUN_OR_EVAL"))
    report: Optional[Path] = field(default=None, metadata=flag(
        "folder for index.html and its pictures (created)", required=True, metavar="DIR"))
    labels: Tuple[str, ...] = field(default=(), metadata=flag(
        "comma-separated names of the models in the report; default: the shortest distinct ends of their paths"))
    resamples: int = field(default=10000, metadata=flag("bootstrap resamples of the images for the paired interval"))
    seed: int = field(default=0, metadata=flag("seed of the bootstrap resampling"))
    progress: bool = field(default=True, metadata=flag("show a progress bar while drawing"))

    def problems(self) -> List[str]:
        """Every problem with the flags that can be seen without opening files, as one-line messages."""
        problems = []
        if not 2 <= len(self.inputs) <= MAX_INPUTS:
            problems.append(f"give 2 to {MAX_INPUTS} run folders or evaluation JSON files, got {len(self.inputs)}")
        if self.labels and len(self.labels) != len(self.inputs):
            problems.append(f"--labels names {len(self.labels)} models but {len(self.inputs)} are compared")
        elif len(set(self.labels)) != len(self.labels):
            problems.append(f"--labels must differ, got {','.join(self.labels)}")
        if self.resamples < 100:
            problems.append(f"--resamples must be at least 100, got {self.resamples}")
        if self.seed < 0:
            problems.append(f"--seed cannot be negative, got {self.seed}")
        if self.report is not None:
            problems.append(output_problem(self.report, "--report", folder=True))
        return [problem for problem in problems if problem]


def evaluation_of_run(folder: Path) -> Path:
    """The evaluation JSON of a run folder's newest evaluated checkpoint; of several for it, the plain one
    (``.eval-<split>.json``: single scale, the whole split), else the newest written. ``UsageError`` saying how
    to make one when there is none."""
    checkpoints = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    evaluations = [path for path in checkpoints.glob("*.ckpt.eval-*.json") if _EVALUATION_NAME.search(path.name)]
    if not evaluations:
        if not any(checkpoints.glob("*.ckpt")):
            raise UsageError(f"{folder} is neither a run folder (it has no checkpoints) nor an evaluation JSON")
        raise UsageError(f"{folder} was never evaluated: make its evaluation with "
                         f"`python -m deeplab_gluon.evaluate --checkpoint {folder}`, then compare again")

    def preference(path: Path):
        iteration, settings = _EVALUATION_NAME.search(path.name).groups()
        return int(iteration or -1), "-" not in settings, path.stat().st_mtime

    return max(evaluations, key=preference)


def rewrite_command(path: Path, data: dict) -> str:
    """The ``evaluate`` command that writes ``path`` again in the current format, from what the old JSON records."""
    if not data.get("checkpoint"):
        return f"python -m deeplab_gluon.evaluate --pred_dir PRED_DIR --gt_dir GT_DIR --output {path}"
    settings = data.get("settings") or {}
    words = ["python -m deeplab_gluon.evaluate", f"--checkpoint {data['checkpoint']}"]
    if data.get("split") not in (None, "val"):
        words.append(f"--split {data['split']}")
    if settings.get("scales") not in (None, [1.0]):
        words.append("--scales " + ",".join(f"{scale:g}" for scale in settings["scales"]))
    if settings.get("flip"):
        words.append("--flip")
    if settings.get("output_stride") not in (None, settings.get("trained_output_stride")):
        words.append(f"--output_stride {settings['output_stride']}")
    if settings.get("limit"):
        words.append(f"--limit {settings['limit']}")
    if settings.get("precision") not in (None, "fp32"):
        words.append(f"--precision {settings['precision']}")
    return " ".join(words + [f"--output {path}"])


def load_evaluation(path: Path) -> dict:
    """An evaluation JSON of the current format; ``UsageError`` for anything else (an older format names the
    command that rewrites it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read evaluation {path}: {err}") from None
    if not isinstance(data, dict) or not ("summary" in data or "IoU" in data):
        raise UsageError(f"{path} is not an evaluation JSON of deeplab_gluon.evaluate")
    if not isinstance(data.get("format"), int) or data["format"] < EVALUATION_FORMAT or "per_image" not in data:
        raise UsageError(f"{path} is an evaluation JSON of an older format, without per-image scores; rewrite it "
                         f"with `{rewrite_command(path, data)}`")
    if data["format"] > EVALUATION_FORMAT:
        raise UsageError(f"{path} is of evaluation format {data['format']}, newer than this version reads "
                         f"({EVALUATION_FORMAT}); update deeplab-gluon")
    return data


def default_labels(paths: Sequence[Path]) -> List[str]:
    """The shortest ends of the paths that tell them apart (``demo/phase2``, ``demo_vortex/phase2``)."""
    parts = [Path(path).absolute().parts for path in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label}#{number}" for number, label in enumerate(labels, start=1)]  # the same path twice


def training_logs(run: Optional[Path], most: int = 4) -> List[Path]:
    """The run's ``log.jsonl`` after those of the runs it was initialised from (``--init_from`` as its
    ``config.json`` records it, followed back up to ``most`` runs), oldest first; empty without a log."""
    logs: List[Path] = []
    while run is not None and len(logs) < most and (run / "log.jsonl").is_file() and run / "log.jsonl" not in logs:
        logs.insert(0, run / "log.jsonl")
        try:
            start = json.loads((run / "config.json").read_text()).get("init_from")
        except (OSError, ValueError, AttributeError):
            start = None
        run = None if not start else Path(start) if Path(start).is_dir() else run_folder_of(start)
    return logs


def gather(config: CompareConfig) -> List[ComparedEvaluation]:
    """Each input's evaluation, its label, and its run log; ``UsageError`` for a missing input, an older
    evaluation format, or class lists that differ."""
    found = []
    for path in config.inputs:
        if path.is_dir():
            source, run = evaluation_of_run(path), path
        elif path.is_file():
            source, run = path, None
        else:
            raise UsageError(f"{path} does not exist")
        data = load_evaluation(source)
        if run is None and data.get("checkpoint"):
            run = run_folder_of(data["checkpoint"])
        found.append((source, run, data))
    first_source, _, first = found[0]
    for source, _, data in found[1:]:
        if data.get("classes") != first.get("classes"):
            def named(classes):
                classes = classes or []
                return f"{len(classes)} classes: {', '.join(map(str, classes[:4]))}{', ...' if len(classes) > 4 else ''}"
            raise UsageError(f"{first_source} and {source} have different class lists ({named(first.get('classes'))} "
                             f"vs {named(data.get('classes'))}): compare needs models of the same classes")
    labels = list(config.labels) or default_labels(
        [run if run is not None else source.with_suffix("") for source, run, _ in found])
    return [ComparedEvaluation(label, data, source, training_logs(None if run is None else Path(run)))
            for label, (source, run, data) in zip(labels, found)]


def run_compare(config: CompareConfig) -> int:
    entries = gather(config)
    try:  # made before anything is drawn or printed: a folder that cannot be is the user's to fix (exit 2)
        config.report.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--report {config.report} cannot be created: {err.strerror or err}") from None
    for entry in entries:
        summary = entry.evaluation["summary"]
        print(f"{entry.label}: {entry.source}: mIoU {100 * (summary['mIoU'] or 0):.2f}, "
              f"pixAcc {100 * (summary['pixAcc'] or 0):.2f}")
    page, verdicts = write_comparison_report(config.report, entries, config.resamples, config.seed, config.progress)
    for verdict in verdicts:
        print(verdict)
    print(f"wrote {page}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, CompareConfig, run_compare, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
