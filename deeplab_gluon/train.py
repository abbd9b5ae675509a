"""``train.py``: the training job's configuration, its command line, and the checks run before any work.

The flags of the original TensorFlow recipe keep their names and meaning (``--base_architecture
resnet_v2_101``, ``--aspp_or_vortex 1|2``, ``--freeze_batch_norm 0|1``, ``--resume -1`` ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .cli import JobArgumentParser, UsageError, fail, fail_all, parse_bool
from .data import DATASETS
from .models.resnet_v2 import OUTPUT_STRIDES

PROG = "train.py"
LR_POLICIES = ("poly", "step")
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")


@dataclass
class TrainConfig:
    """Everything one training run needs; stored in every checkpoint."""

    # data
    dataset: str = "voc"
    data_dir: str = "VOCdevkit_aug"
    train_split: str = "train_aug"
    val_split: str = "val"
    num_classes: int = 0                   # 0: the dataset's own (21 for VOC, 5 for toy)
    ignore_label: int = 255
    crop_size: int = 513
    scale_range: Tuple[float, ...] = (0.5, 2.0)   # random rescaling of training images
    num_workers: int = 2
    skip_bad_samples: bool = True
    # model
    base_architecture: str = "resnet_v2_101"
    pre_trained_model: str = ""            # model-zoo resnetXX_v2 .params for the backbone
    output_stride: int = 16
    aspp_or_vortex: int = 1                # 1: ASPP, 2: Vortex Pooling
    vortex_module: str = "A"
    multi_grid: Tuple[int, ...] = ()
    aux: bool = False
    aux_weight: float = 0.4
    freeze_batch_norm: bool = False
    syncbn: bool = False
    init_from: str = ""                    # checkpoint (or run folder) to take weights from, e.g. phase 1
    load_backbone_only: bool = False
    # optimisation
    batch_size: int = 16
    initial_learning_rate: float = 7e-3
    lr_policy: str = "poly"
    lr_power: float = 0.9
    lr_steps: Tuple[float, ...] = (0.5, 0.75)   # step policy: fractions of max_iter where lr drops 10x
    head_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    max_iter: int = 0                      # total iterations; 0: train_epochs decides
    train_epochs: int = 0
    # devices
    gpus: str = ""
    kvstore: str = "device"
    # run
    output_dir: str = "runs/deeplab"
    resume: str = "-1"                     # -1: fresh; last; an epoch number; a checkpoint path
    val_every: int = 1                     # epochs between validations; 0: only at the end
    log_every: int = 10
    checkpoint_every: int = 0              # iterations between checkpoints; 0: at the end of each epoch
    keep_checkpoints: int = 3
    seed: int = 0
    deterministic: bool = False
    max_bad_steps: int = 5                 # consecutive non-finite losses before training stops
    progress: bool = True

    @property
    def head(self) -> str:
        return "aspp" if self.aspp_or_vortex == 1 else "vortex"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _ints(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> Tuple[float, ...]:
    try:
        return tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


HELP = {
    "dataset": "voc (VOCdevkit_aug), folder (images/ + labels/) or toy (synthetic shapes, generated if absent)",
    "data_dir": "dataset root",
    "train_split": "split to train on (VOC: train, train_aug, trainval)",
    "val_split": "split to validate on",
    "num_classes": "number of classes; 0 takes the dataset's own",
    "ignore_label": "label value that marks pixels to ignore",
    "crop_size": "training crop side in pixels",
    "scale_range": "random rescaling of training images before the crop: min,max",
    "num_workers": "data loading processes",
    "skip_bad_samples": "log an unreadable sample once and go on instead of stopping (0/1)",
    "base_architecture": "resnet_v2_{18,34,50,101,152} (resnet50_v2 spelling accepted)",
    "pre_trained_model": "model-zoo resnetXX_v2 .params file for the backbone (ImageNet weights)",
    "output_stride": "8, 16 or 32",
    "aspp_or_vortex": "1: ASPP head, 2: Vortex Pooling head",
    "vortex_module": "Vortex Pooling module A (independent poolings) or B (cascaded)",
    "multi_grid": "unit rates of the last stage's blocks, e.g. 1,2,4",
    "aux": "add the auxiliary FCN head on stage 3 (0/1)",
    "aux_weight": "weight of the auxiliary loss",
    "freeze_batch_norm": "1: BatchNorm uses stored statistics and gamma/beta do not learn",
    "syncbn": "synchronise BatchNorm statistics across devices (0/1)",
    "init_from": "checkpoint (or run folder: its latest checkpoint) whose weights start this run",
    "load_backbone_only": "with --init_from/--resume: take only the backbone's weights (0/1)",
    "batch_size": "images per iteration over all devices of this worker",
    "initial_learning_rate": "base learning rate",
    "lr_policy": "poly: lr*(1-it/max_iter)^power; step: lr/10 at --lr_steps fractions of max_iter",
    "lr_power": "power of the poly policy",
    "lr_steps": "step policy: fractions of max_iter, e.g. 0.5,0.75",
    "head_lr_mult": "learning-rate multiplier for the heads (e.g. 10)",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay",
    "max_iter": "total iterations (0: --train_epochs decides)",
    "train_epochs": "epochs, used when --max_iter is 0",
    "gpus": "GPU ids like 0,1; empty or -1 for CPU; cpu:N for N CPU contexts",
    "kvstore": "gradient reduction: device, local, dist_sync, dist_device_sync, dist_async",
    "output_dir": "where checkpoints, log.jsonl and curves.png go",
    "resume": "-1: fresh run; last: newest checkpoint in output_dir; N: the end of epoch N; or a checkpoint path",
    "val_every": "validate every N epochs (0: only at the end)",
    "log_every": "iterations between log lines",
    "checkpoint_every": "iterations between checkpoints (0: at the end of each epoch)",
    "keep_checkpoints": "how many recent checkpoints to keep",
    "seed": "seed of data order, augmentation, initialisation and dropout",
    "deterministic": "ask MXNet for deterministic kernels (slower on GPU)",
    "max_bad_steps": "stop after this many consecutive non-finite losses",
    "progress": "show a progress bar (0/1)",
}


def build_parser() -> argparse.ArgumentParser:
    """One flag per :class:`TrainConfig` field, typed from the field's default."""
    parser = JobArgumentParser(prog=PROG, description="Train DeepLabV3 (ASPP or Vortex Pooling).",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    choices = {"dataset": DATASETS, "lr_policy": LR_POLICIES, "kvstore": KVSTORES, "aspp_or_vortex": (1, 2),
               "output_stride": OUTPUT_STRIDES, "vortex_module": ("A", "B")}
    for spec in dataclasses.fields(TrainConfig):
        default = spec.default
        if isinstance(default, bool):
            kind = parse_bool
        elif spec.name == "multi_grid":
            kind = _ints
        elif spec.name in ("lr_steps", "scale_range"):
            kind = _floats
        else:
            kind = type(default)
        parser.add_argument(f"--{spec.name}", type=kind, default=default, choices=choices.get(spec.name),
                            help=HELP[spec.name])
    return parser


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    return TrainConfig(**vars(args))


def validate_config(config: TrainConfig) -> List[str]:
    """Every problem with ``config`` that can be seen before any work starts, as one-line messages."""
    from .checkpoint import CheckpointError, read_meta
    from .devices import parse_devices
    from .models import parse_backbone

    problems = []

    def check(condition, message):
        if not condition:
            problems.append(message)

    try:
        parse_backbone(config.base_architecture)
    except ValueError as err:
        problems.append(f"--base_architecture: {err}")
    try:
        devices = parse_devices(config.gpus)
    except ValueError as err:
        problems.append(str(err))
        devices = []
    check(config.batch_size >= max(1, len(devices)),
          f"--batch_size {config.batch_size} must be at least the number of devices ({len(devices)})")
    check(config.crop_size >= config.output_stride,
          f"--crop_size {config.crop_size} is smaller than --output_stride {config.output_stride}")
    check(config.num_classes >= 0, f"--num_classes must be positive (or 0 for the dataset's), got {config.num_classes}")
    check(0 <= config.ignore_label <= 255, f"--ignore_label must be in 0..255, got {config.ignore_label}")
    check(config.max_iter > 0 or config.train_epochs > 0, "give --max_iter or --train_epochs (both are 0)")
    check(config.max_iter >= 0 and config.train_epochs >= 0, "--max_iter and --train_epochs cannot be negative")
    check(config.initial_learning_rate > 0, f"--initial_learning_rate must be positive, got {config.initial_learning_rate}")
    check(0 <= config.momentum < 1, f"--momentum must be in [0, 1), got {config.momentum}")
    check(config.weight_decay >= 0, f"--weight_decay cannot be negative, got {config.weight_decay}")
    check(config.lr_power > 0, f"--lr_power must be positive, got {config.lr_power}")
    check(all(0 < step < 1 for step in config.lr_steps), f"--lr_steps must be fractions in (0, 1), got {config.lr_steps}")
    check(len(config.scale_range) == 2 and 0 < config.scale_range[0] <= config.scale_range[1],
          f"--scale_range must be min,max with 0 < min <= max, got {config.scale_range}")
    check(config.head_lr_mult > 0, f"--head_lr_mult must be positive, got {config.head_lr_mult}")
    check(config.aux_weight >= 0, f"--aux_weight cannot be negative, got {config.aux_weight}")
    check(config.num_workers >= 0, f"--num_workers cannot be negative, got {config.num_workers}")
    check(config.val_every >= 0 and config.log_every >= 1 and config.checkpoint_every >= 0,
          "--val_every and --checkpoint_every must be >= 0 and --log_every >= 1")
    check(config.keep_checkpoints >= 1, f"--keep_checkpoints must be at least 1, got {config.keep_checkpoints}")
    check(config.max_bad_steps >= 1, f"--max_bad_steps must be at least 1, got {config.max_bad_steps}")
    check(all(rate >= 1 for rate in config.multi_grid), f"--multi_grid rates must be >= 1, got {config.multi_grid}")
    check(not (config.syncbn and config.freeze_batch_norm), "--syncbn and --freeze_batch_norm 1 exclude each other")
    if config.dataset != "toy":
        check(Path(config.data_dir).is_dir(), f"--data_dir {config.data_dir} does not exist")
    if config.pre_trained_model:
        check(Path(config.pre_trained_model).is_file(), f"--pre_trained_model {config.pre_trained_model} does not exist")
    if config.init_from:
        check(Path(config.init_from).exists(), f"--init_from {config.init_from} does not exist")
    resume = str(config.resume).strip()
    if resume not in ("-1", "last") and not resume.isdigit():
        if not Path(resume).is_file():
            problems.append(f"--resume {resume}: no such checkpoint (use -1, last, an epoch number or a file)")
        else:
            try:
                read_meta(resume)
            except CheckpointError as err:
                problems.append(f"--resume: {err}")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        config = parse_config(argv)
    except UsageError as err:
        return fail(PROG, err)
    problems = validate_config(config)
    if problems:
        return fail_all(PROG, problems)
    if config.deterministic:
        os.environ.setdefault("MXNET_ENFORCE_DETERMINISM", "1")
        os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
    from .trainer import TrainingError, run_training

    try:
        summary = run_training(config)
    except TrainingError as err:
        fail(PROG, err)
        return 1
    except KeyboardInterrupt as stop:
        print(f"train.py: {stop}", file=sys.stderr)
        return 130
    if summary.get("final"):
        final = summary["final"]
        print(f"done: iteration {summary['iteration']}, pixAcc {final['pixAcc']:.4f}, mIoU {final['mIoU']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
