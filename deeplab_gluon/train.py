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
    """``--aspp_or_vortex``: 1 or ``aspp`` is ASPP, 2 or ``vortex`` is Vortex Pooling, 3 or ``lite`` the
    light head (1x1 + image pooling, no atrous branches)."""
    value = {"1": "aspp", "2": "vortex", "3": "lite"}.get(str(text).strip(), str(text).strip().lower())
    if value not in HEADS:
        raise argparse.ArgumentTypeError(f"expected 1 (ASPP), 2 (Vortex Pooling) or 3 (lite), got {text!r}")
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
    class_list: str = field(default="", metadata=flag(
        "--dataset folder: a class list file (a class name, optionally its r g b colour, a line) used instead of "
        "--data_dir's classes.txt", name="classes", group=DATA, recipe=True))
    ignore_label: int = field(default=255, metadata=flag(
        "label value that marks pixels to ignore", group=DATA, recipe=True))
    crop_size: int = field(default=513, metadata=flag("training crop side in pixels", group=DATA, recipe=True))
    scale_range: Tuple[float, ...] = field(default=(0.5, 2.0), metadata=flag(
        "random rescaling of training images before the crop: min,max", group=DATA, recipe=True))
    color_jitter: bool = field(default=False, metadata=flag(
        "1: random brightness, contrast and saturation (factors in 0.7..1.3) of each training crop",
        group=DATA, recipe=True))
    blur: bool = field(default=False, metadata=flag(
        "1: Gaussian blur (sigma 0.1..2 pixels) of half the training crops", group=DATA, recipe=True))
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
        "1: ASPP head, 2: Vortex Pooling head, 3: lite head (1x1 + image pooling only, TF's MobileNetV2 head)",
        name="aspp_or_vortex", parse=parse_head, metavar="1|2|3",
        group=MODEL, recipe=True, shown_default="1"))
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
    separable: bool = field(default=False, metadata=flag(
        "1: the head's atrous 3x3 convs and the decoder's 3x3 convs as depthwise 3x3 + pointwise 1x1 "
        "(TF DeepLab's separable ASPP / decoder); 0: the paper's dense convs", group=MODEL, recipe=True))

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
    warmup_iters: int = field(default=0, metadata=flag(
        "iterations at the start whose learning rate rises linearly from 0 to --initial_learning_rate "
        "(the schedule then runs over the remaining iterations)", group=OPTIMISATION, recipe=True))
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
    dry_run: bool = field(default=False, metadata=flag(
        "check everything that needs no training (flags, data folder and split lists with their image counts, "
        "--init_from/--resume checkpoints, the --pre_trained_model file), print the resolved values and exit",
        group=RUN))

    # model flags that completed() took from the --init_from checkpoint (not a field: not saved or compared)
    taken_from_checkpoint = ()

    @property
    def training_split(self) -> str:
        """``train_split``, or the dataset's own training split when it is not given (a folder dataset
        without ``train.txt``: ``all`` its images)."""
        return self.train_split or default_train_split(self.dataset, self.data_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def completed(self, given) -> "TrainConfig":
        """This config with the model flags not in ``given`` (the fields the command line and config file
        set) taken from the ``--init_from`` checkpoint, whose weights fit only the network it records:
        ``--init_from gluoncv.ckpt`` alone trains gluoncv's network. Unchanged without ``--init_from``, with
        ``--load_backbone_only 1`` (another model on purpose), or when the checkpoint cannot be opened
        (``problems()`` and the run say why)."""
        if not self.init_from or self.load_backbone_only or not Path(self.init_from).exists():
            return self
        try:
            recorded = Checkpoint.open(self.init_from).spec
        except (CheckpointError, ValueError):
            return self
        taken = {name: getattr(recorded, name) for name in MODEL_FIELDS_FROM_CHECKPOINT
                 if name not in given and getattr(recorded, name) != getattr(self, name)}
        if not taken:
            return self
        completed = dataclasses.replace(self, **taken)
        completed.taken_from_checkpoint = [f"--{FLAG_NAMES.get(name, name)} {_shown(value)}"
                                           for name, value in taken.items()]
        return completed

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
        check(not self.class_list or self.dataset == "folder", "--classes applies to --dataset folder only")
        check(not self.class_list or Path(self.class_list).is_file(), f"--classes {self.class_list} does not exist")
        check(self.dataset != "folder" or self.num_classes or self.class_list
              or (Path(self.data_dir) / "classes.txt").is_file(),
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
        check(self.warmup_iters >= 0, f"--warmup_iters cannot be negative, got {self.warmup_iters}")
        check(self.max_iter <= 0 or self.warmup_iters < self.max_iter,
              f"--warmup_iters {self.warmup_iters} must be fewer than --max_iter {self.max_iter}")
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


# what --init_from's checkpoint decides unless given: its network (not the class count, which the data gives)
MODEL_FIELDS_FROM_CHECKPOINT = ("backbone", "head", "output_stride", "multi_grid", "vortex_module", "aux",
                                "decoder", "head_variant", "dilation_rule")
FLAG_NAMES = {f.name: f.metadata["name"] for f in dataclasses.fields(TrainConfig) if "name" in f.metadata}


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
    if config.taken_from_checkpoint:
        print(f"--init_from {config.init_from}: the checkpoint's network: {' '.join(config.taken_from_checkpoint)}")
    if config.dry_run:
        return dry_run(config)
    summary = run_training(config)
    final = summary.get("final")
    if final and final.get("mIoU") is not None:
        print(f"done: iteration {summary['iteration']}, pixAcc {final['pixAcc']:.4f}, mIoU {final['mIoU']:.4f}")
    return 0


def dry_run(config: TrainConfig) -> int:
    """``--dry_run 1``: the checks that need no training, then the resolved values; 0, or a
    ``UsageError`` (exit 2) naming what would stop the run."""
    from .cli import UsageError
    from .data import DataError, get_dataset, wants_split
    from .models import ModelSpec
    from .trainer import resumed_config_changes, starting_point

    start = starting_point(config.resume, config.init_from, Path(config.output_dir) / "checkpoints")
    if start.resume is not None:
        resumed_config_changes(config, start.resume)
    extra = {"num_classes": config.num_classes, "ignore_label": config.ignore_label,
             "class_file": config.class_list or None} if config.dataset == "folder" else {}
    classes = None
    if config.dataset == "toy" and not Path(config.data_dir).is_dir():
        print(f"data: the toy dataset would be generated in {config.data_dir}")
    else:
        for role, split in (("train", config.training_split), ("val", config.val_split)):
            if role == "val" and not wants_split(split):
                print("val: none (no validation)")
                continue
            try:
                dataset = get_dataset(config.dataset, config.data_dir, split, **extra)
            except DataError as err:
                raise UsageError(f"--{role}_split {split}: {err}") from None
            print(f"{role}: {dataset.describe()}")
            classes = classes or list(dataset.classes)
    try:
        spec = ModelSpec.from_config(config, num_classes=config.num_classes or len(classes or dataset_classes(
            config.dataset) or ()) or 21)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"model: {spec.name}, output stride {spec.output_stride}"
          + (f", multi-grid {_shown(spec.multi_grid)}" if spec.multi_grid else "") + f", {spec.num_classes} classes")
    if start.init is not None:
        differences = [] if config.load_backbone_only else start.init.spec.weight_differences(spec)
        if differences:
            raise UsageError(f"--init_from: {start.init.path} does not fit this model: {', '.join(differences)}; "
                             f"pass --load_backbone_only 1 to take its backbone alone")
    print(f"start: {start.note}")
    if config.pretrained_backbone and start.resume is None and start.init is None:
        from .models import build_model
        from .models.backbones.base import PretrainedFileError
        try:  # builds the network on the CPU: seconds for a ResNet-101
            build_model(spec, pretrained_base=config.pretrained_backbone)
        except PretrainedFileError as err:
            raise UsageError(f"--pre_trained_model: {err}") from None
        print(f"pretrained: {config.pretrained_backbone} fits {spec.backbone}")
    print("resolved flags:")
    for name, value in config.to_dict().items():
        if value is not None:
            print(f"  --{FLAG_NAMES.get(name, name)} {_shown(value)}")
    print("dry run: every check passed; nothing was trained")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, TrainConfig, train, argv, "Train DeepLabV3 (ASPP or Vortex Pooling).")


if __name__ == "__main__":
    sys.exit(main())
