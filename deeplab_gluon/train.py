"""``train.py``: the training job's configuration, its command line, and the checks run before any work.

The flags of the original TensorFlow recipe keep their names and meaning (``--base_architecture
resnet_v2_101``, ``--aspp_or_vortex 1|2``, ``--freeze_batch_norm 0|1``, ``--resume -1`` ...); they are
spelled that way on the command line only, the fields (and the library) say ``backbone``, ``head``,
``freeze_bn``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .checkpoint import Checkpoint, CheckpointError
from .cli import flag, output_problem, parse_config as parse_job_config, run_job
from .cpu_threads import ThreadsFlag
from .data import DATASETS, TRAIN_SPLITS, dataset_classes, default_train_split
from .data.registry import ignore_label_problem
from .devices import parse_devices
from .models.backbones import DILATION_RULES, canonical_backbone, check_dilation_rule
from .models.spec import HEAD_VARIANTS, HEADS, OUTPUT_STRIDES, VORTEX_MODULES

PROG = "train.py"
LR_POLICIES = ("poly", "step")
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")
DATA, MODEL, OPTIMISATION, DEVICES, RUN = "data", "model", "optimisation", "devices", "run"


def parse_head(text: str) -> str:
    """``--aspp_or_vortex``: 1 or ``aspp`` is ASPP, 2 or ``vortex`` is Vortex Pooling."""
    value = {"1": "aspp", "2": "vortex"}.get(str(text).strip(), str(text).strip().lower())
    if value not in HEADS:
        raise argparse.ArgumentTypeError(f"expected 1 (ASPP) or 2 (Vortex Pooling), got {text!r}")
    return value


@dataclass
class TrainConfig(ThreadsFlag):
    """Everything one training run needs; stored in every checkpoint."""

    dataset: str = field(default="voc", metadata=flag(
        "voc (VOCdevkit_aug), folder (images/ + labels/) or toy (synthetic shapes, generated if absent)",
        choices=DATASETS, group=DATA, recipe=True))
    data_dir: str = field(default="VOCdevkit_aug", metadata=flag("dataset root", group=DATA))
    train_split: str = field(default="", metadata=flag(
        "split to train on: a split name, a .txt list (ids, or 'image label' pairs; a leading / is relative to "
        "--data_dir), or 'all' (folder: every image in images/); default: the dataset's own (VOC: train_aug; "
        "folder: train if train.txt exists, else all; others: train)", group=DATA, recipe=True))
    val_split: str = field(default="val", metadata=flag(
        "split to validate on, as --train_split; 'none' (or '') trains without validation", group=DATA))
    num_classes: int = field(default=0, metadata=flag(
        "number of classes; 0 takes the dataset's own", group=DATA, recipe=True))
    ignore_label: int = field(default=255, metadata=flag(
        "label value that marks pixels to ignore", group=DATA, recipe=True))
    crop_size: int = field(default=513, metadata=flag("training crop side in pixels", group=DATA, recipe=True))
    scale_range: Tuple[float, ...] = field(default=(0.5, 2.0), metadata=flag(
        "random rescaling of training images before the crop: min,max", group=DATA, recipe=True))
    num_workers: int = field(default=2, metadata=flag("data loading processes", group=DATA))
    skip_bad_samples: bool = field(default=True, metadata=flag(
        "log an unreadable sample once and go on instead of stopping", group=DATA))

    backbone: str = field(default="resnet101_v2", metadata=flag(
        "resnet_v2_{18,34,50,101,152} (resnet50_v2 spelling accepted), resnet{18,34,50,101,152}_v1b, "
        "resnet{50,101,152}_v1s, mobilenetv2_1.0 or xception65", name="base_architecture", group=MODEL, recipe=True))
    pretrained_backbone: str = field(default="", metadata=flag(
        "the backbone's ImageNet model-zoo .params file (Gluon's resnetXX_v2, gluoncv's resnetXX_v1b/v1s, "
        "mobilenetv2_1.0, xception)", name="pre_trained_model", group=MODEL))
    output_stride: int = field(default=16, metadata=flag(
        "8, 16 or 32", choices=OUTPUT_STRIDES, group=MODEL, recipe=True))
    head: str = field(default="aspp", metadata=flag(
        "1: ASPP head, 2: Vortex Pooling head", name="aspp_or_vortex", parse=parse_head, metavar="1|2",
        group=MODEL, recipe=True))
    vortex_module: str = field(default="A", metadata=flag(
        "Vortex Pooling module A (independent poolings) or B (cascaded)", choices=VORTEX_MODULES,
        group=MODEL, recipe=True))
    multi_grid: Tuple[int, ...] = field(default=(), metadata=flag(
        "unit rates of the last stage's blocks, e.g. 1,2,4", group=MODEL, recipe=True))
    aux: bool = field(default=False, metadata=flag("add the auxiliary FCN head on stage 3", group=MODEL, recipe=True))
    decoder: bool = field(default=False, metadata=flag(
        "1: DeepLabV3+ decoder, refining the head's output with the backbone's stride-4 features",
        group=MODEL, recipe=True))
    head_variant: str = field(default="deeplab", metadata=flag(
        "deeplab: the head's branches fused by a 1x1 conv; gluoncv: a 1x1 then a 3x3 conv, as gluoncv's DeepLabV3 "
        "(a converted gluoncv checkpoint, see convert_gluoncv)", choices=HEAD_VARIANTS, group=MODEL, recipe=True))
    dilation_rule: str = field(default="uniform", metadata=flag(
        "uniform: every 3x3 conv of a dilated stage at its rate; gluoncv: the first block at half the rate, "
        "as gluoncv's dilated ResNet-v1b/v1s", choices=DILATION_RULES, group=MODEL, recipe=True))
    aux_weight: float = field(default=0.4, metadata=flag("weight of the auxiliary loss", group=MODEL, recipe=True))
    freeze_bn: bool = field(default=False, metadata=flag(
        "1: BatchNorm uses stored statistics and gamma/beta do not learn", name="freeze_batch_norm",
        group=MODEL, recipe=True))
    syncbn: bool = field(default=False, metadata=flag("synchronise BatchNorm statistics across devices", group=MODEL))
    init_from: str = field(default="", metadata=flag(
        "checkpoint (or run folder: its latest checkpoint) whose weights start this run", group=MODEL))
    load_backbone_only: bool = field(default=False, metadata=flag(
        "with --init_from: take only the backbone's weights (e.g. for another class count)", group=MODEL))

    batch_size: int = field(default=16, metadata=flag(
        "images per forward/backward pass over all devices of this worker", group=OPTIMISATION, recipe=True))
    iter_size: int = field(default=1, metadata=flag(
        "passes whose gradients add up before each update (the DeepLab-ResNet repo's --grad-update-every): "
        "an update sees batch_size * iter_size images", group=OPTIMISATION, recipe=True))
    learning_rate: float = field(default=7e-3, metadata=flag(
        "base learning rate", name="initial_learning_rate", group=OPTIMISATION, recipe=True))
    lr_policy: str = field(default="poly", metadata=flag(
        "poly: lr*(1-it/max_iter)^power; step: lr/10 at --lr_steps fractions of max_iter", choices=LR_POLICIES,
        group=OPTIMISATION, recipe=True))
    lr_power: float = field(default=0.9, metadata=flag("power of the poly policy", group=OPTIMISATION, recipe=True))
    lr_steps: Tuple[float, ...] = field(default=(0.5, 0.75), metadata=flag(
        "step policy: fractions of max_iter where the lr drops 10x", group=OPTIMISATION, recipe=True))
    class_weights: str = field(default="", metadata=flag(
        "auto: ENet weights 1/ln(1.02 + p_c) from the training labels' class frequencies (counted once, cached "
        "next to the data); or a file with one weight per class; empty: unweighted", group=OPTIMISATION, recipe=True))
    head_lr_mult: float = field(default=1.0, metadata=flag(
        "learning-rate multiplier for the heads (e.g. 10)", group=OPTIMISATION, recipe=True))
    momentum: float = field(default=0.9, metadata=flag("SGD momentum", group=OPTIMISATION, recipe=True))
    weight_decay: float = field(default=1e-4, metadata=flag("L2 weight decay", group=OPTIMISATION, recipe=True))
    max_iter: int = field(default=0, metadata=flag(
        "total iterations (0: --train_epochs decides)", group=OPTIMISATION, recipe=True))
    train_epochs: int = field(default=0, metadata=flag(
        "epochs, used when --max_iter is 0 (ignored, with a note, when both are given)",
        group=OPTIMISATION, recipe=True))

    gpus: str = field(default="", metadata=flag(
        "GPU ids like 0,1; empty or -1 for CPU; cpu:N for N CPU contexts", group=DEVICES))
    kvstore: str = field(default="device", metadata=flag(
        "gradient reduction: device, local, dist_sync, dist_device_sync, dist_async", choices=KVSTORES,
        group=DEVICES))

    output_dir: str = field(default="runs/deeplab", metadata=flag(
        "where checkpoints, log.jsonl and curves.png go", group=RUN))
    resume: str = field(default="-1", metadata=flag(
        "-1: fresh run; last: newest checkpoint in output_dir (fresh if there is none); N: the end of epoch N; "
        "or a checkpoint file", group=RUN))
    allow_config_change: bool = field(default=False, metadata=flag(
        "with --resume: accept flags that differ from the resumed run's (data, model, schedule, seed), "
        "which breaks its exact continuation", group=RUN))
    val_every: int = field(default=1, metadata=flag("validate every N epochs (0: only at the end)", group=RUN))
    val_every_iter: int = field(default=0, metadata=flag(
        "validate every N iterations instead (0: --val_every decides)", group=RUN))
    val_limit: int = field(default=0, metadata=flag(
        "validate on the first N images of the split only (0: all), for a quick check", group=RUN))
    log_every: int = field(default=10, metadata=flag("iterations between log lines", group=RUN))
    checkpoint_every: int = field(default=0, metadata=flag(
        "iterations between checkpoints (0: at the end of each epoch)", group=RUN))
    keep_checkpoints: int = field(default=3, metadata=flag("how many recent checkpoints to keep", group=RUN))
    seed: int = field(default=0, metadata=flag(
        "seed of data order, augmentation, initialisation and dropout", group=RUN, recipe=True))
    deterministic: bool = field(default=False, metadata=flag(
        "GPU: deterministic cuDNN algorithms only, no autotuning (slower); CPU runs repeat bit for bit with one "
        "thread (--threads 1), to float rounding with several",
        group=RUN))
    max_bad_steps: int = field(default=5, metadata=flag(
        "stop after this many consecutive non-finite losses", group=RUN))
    progress: bool = field(default=True, metadata=flag("show a progress bar", group=RUN))

    @property
    def training_split(self) -> str:
        """``train_split``, or the dataset's own training split when it is not given (a folder dataset
        without ``train.txt``: ``all`` its images)."""
        return self.train_split or default_train_split(self.dataset, self.data_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def recipe_changes(self, saved: dict) -> List[str]:
        """``--crop_size 32 (now 40)`` for each flag marked ``recipe`` whose value differs from ``saved``
        (the ``config`` a checkpoint recorded): what a resumed run must keep to continue exactly.

        Flags that ``saved`` does not record (older versions) are not compared; the first round's
        field names (``base_architecture``, ``initial_learning_rate`` ...) are read as today's.
        """
        renamed = {f.metadata["name"]: f.name for f in dataclasses.fields(self) if "name" in f.metadata}
        saved = {renamed.get(key, key): value for key, value in saved.items()}
        changes = []
        for spec in dataclasses.fields(self):
            if not spec.metadata.get("recipe") or saved.get(spec.name) is None:
                continue
            before = _comparable(spec.name, saved[spec.name], saved)
            now = _comparable(spec.name, getattr(self, spec.name), self.to_dict())
            if before != now:
                changes.append(f"--{spec.metadata.get('name', spec.name)} {_shown(before)} (now {_shown(now)})")
        return changes

    def problems(self) -> List[str]:
        """Every problem that can be seen before any work starts, as one-line messages."""
        problems = []

        def check(condition, message):
            if not condition:
                problems.append(message)

        try:
            backbone = canonical_backbone(self.backbone)
        except ValueError as err:
            problems.append(f"--base_architecture: {err}")
        else:
            try:
                check_dilation_rule(backbone, self.dilation_rule)
            except ValueError as err:
                problems.append(f"--dilation_rule: {err}")
        try:
            devices = parse_devices(self.gpus)
        except ValueError as err:
            problems.append(str(err))
            devices = []
        check(self.batch_size >= max(1, len(devices)),
              f"--batch_size {self.batch_size} must be at least the number of devices ({len(devices)})")
        check(self.iter_size >= 1, f"--iter_size must be at least 1, got {self.iter_size}")
        check(self.crop_size >= self.output_stride,
              f"--crop_size {self.crop_size} is smaller than --output_stride {self.output_stride}")
        check(self.num_classes >= 0, f"--num_classes must be positive (or 0 for the dataset's), got {self.num_classes}")
        check(self.dataset != "folder" or self.num_classes or (Path(self.data_dir) / "classes.txt").is_file(),
              f"--dataset folder needs --num_classes N or a class list {Path(self.data_dir) / 'classes.txt'} "
              f"(one class name a line, optionally with its r g b colour)")
        known = dataset_classes(self.dataset)
        if known and 0 < self.num_classes < len(known):
            problems.append(f"--num_classes {self.num_classes} is fewer than the {len(known)} classes of the "
                            f"{self.dataset} dataset, whose labels would be clipped; pass 0 (the dataset's) or more")
        check(0 <= self.ignore_label <= 255, f"--ignore_label must be in 0..255, got {self.ignore_label}")
        problems.append(ignore_label_problem(self.dataset, self.ignore_label))
        if self.max_iter < 0 or self.train_epochs < 0:
            problems.append("--max_iter and --train_epochs cannot be negative")
        else:
            check(self.max_iter > 0 or self.train_epochs > 0, "give --max_iter or --train_epochs (both are 0)")
        check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
              f"--initial_learning_rate must be a positive number, got {self.learning_rate}")
        check(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
              f"--weight_decay cannot be negative, got {self.weight_decay}")
        check(self.lr_power > 0, f"--lr_power must be positive, got {self.lr_power}")
        check(all(0 < step < 1 for step in self.lr_steps), f"--lr_steps must be fractions in (0, 1), got {self.lr_steps}")
        check(len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
              f"--scale_range must be min,max with 0 < min <= max, got {self.scale_range}")
        check(self.head_lr_mult > 0, f"--head_lr_mult must be positive, got {self.head_lr_mult}")
        check(self.aux_weight >= 0, f"--aux_weight cannot be negative, got {self.aux_weight}")
        check(self.num_workers >= 0, f"--num_workers cannot be negative, got {self.num_workers}")
        check(min(self.val_every, self.val_every_iter, self.val_limit, self.checkpoint_every) >= 0
              and self.log_every >= 1,
              "--val_every, --val_every_iter, --val_limit and --checkpoint_every must be >= 0 and --log_every >= 1")
        check(self.keep_checkpoints >= 1, f"--keep_checkpoints must be at least 1, got {self.keep_checkpoints}")
        check(self.max_bad_steps >= 1, f"--max_bad_steps must be at least 1, got {self.max_bad_steps}")
        check(0 <= self.seed < 2 ** 32, f"--seed must be in 0..{2 ** 32 - 1}, got {self.seed}")
        check(all(rate >= 1 for rate in self.multi_grid), f"--multi_grid rates must be >= 1, got {self.multi_grid}")
        check(not (self.syncbn and self.freeze_bn), "--syncbn and --freeze_batch_norm 1 exclude each other")
        check(not (self.load_backbone_only and not self.init_from),
              "--load_backbone_only 1 applies to --init_from (a resumed run continues with all its weights); "
              "to start from this run's backbone, pass --init_from <its folder> with a new --output_dir")
        if not self.output_dir.strip():
            problems.append("--output_dir cannot be empty")
        else:
            problems.append(output_problem(Path(self.output_dir), "--output_dir", folder=True))
        check(self.dataset == "toy" or Path(self.data_dir).is_dir(), f"--data_dir {self.data_dir} does not exist")
        check(self.class_weights in ("", "auto") or Path(self.class_weights).is_file(),
              f"--class_weights {self.class_weights}: neither 'auto' nor an existing file")
        check(not self.pretrained_backbone or Path(self.pretrained_backbone).is_file(),
              f"--pre_trained_model {self.pretrained_backbone} does not exist")
        check(not self.init_from or Path(self.init_from).exists(), f"--init_from {self.init_from} does not exist")
        problems.extend(self._resume_problems())
        return [problem for problem in problems if problem]

    def _resume_problems(self) -> List[str]:
        resume = str(self.resume).strip()
        if resume in ("-1", "last") or resume.isdigit():
            return []
        if not Path(resume).is_file():
            return [f"--resume {resume}: no such checkpoint (use -1, last, an epoch number or a file)"]
        try:
            Checkpoint.read(resume)
        except CheckpointError as err:
            return [f"--resume: {err}"]
        return []


def _comparable(name: str, value, config: dict):
    """A recorded or given flag value in the form that compares: ``resnet_v2_50`` is ``resnet50_v2``,
    ``--aspp_or_vortex 1`` is ``aspp``, lists are tuples, an empty ``--train_split`` the dataset's own."""
    if isinstance(value, list):
        value = tuple(value)
    try:
        if name == "backbone":
            return canonical_backbone(str(value))
        if name == "head":
            return parse_head(str(value))
    except (ValueError, argparse.ArgumentTypeError):
        return value
    if name == "train_split" and not value and config.get("dataset") in TRAIN_SPLITS:
        return default_train_split(config["dataset"], config.get("data_dir") or ".")
    return value


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "''"
    return "''" if value == "" else str(value)


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """The :class:`TrainConfig` of a ``train.py`` command line; ``UsageError`` for a bad flag."""
    return parse_job_config(TrainConfig, PROG, argv, "Train DeepLabV3 (ASPP or Vortex Pooling).")


def train(config: TrainConfig) -> int:
    """Run the training ``config`` describes and print its final scores."""
    if config.deterministic:
        # cuDNN reads these when each convolution first runs, which is after this point
        os.environ["MXNET_ENFORCE_DETERMINISM"] = "1"
        os.environ["MXNET_CUDNN_AUTOTUNE_DEFAULT"] = "0"
    from .trainer import run_training  # imported here so that tests can replace it

    backbone = canonical_backbone(config.backbone)
    if backbone.endswith("_v2") and "v2" not in config.backbone.lower():  # "resnet101": v1 or v2?
        print(f"--base_architecture {config.backbone} is read as {backbone} (ResNet-v2)")
    if config.max_iter > 0 and config.train_epochs > 0:  # the original recipe had both flags
        print(f"--max_iter {config.max_iter} sets the length of training; --train_epochs {config.train_epochs} "
              f"is ignored")
    summary = run_training(config)
    final = summary.get("final")
    if final and final.get("mIoU") is not None:
        print(f"done: iteration {summary['iteration']}, pixAcc {final['pixAcc']:.4f}, mIoU {final['mIoU']:.4f}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, TrainConfig, train, argv, "Train DeepLabV3 (ASPP or Vortex Pooling).")


if __name__ == "__main__":
    sys.exit(main())
