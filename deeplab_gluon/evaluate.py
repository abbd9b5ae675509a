"""Evaluation: score a checkpoint on a dataset split, or a folder of predictions against ground truth.

Checkpoint mode (full resolution, batch 1, any image size):

    python -m deeplab_gluon.evaluate --checkpoint runs/demo/phase2            # the run's latest checkpoint
    python -m deeplab_gluon.evaluate --checkpoint runs/voc/phase2 --dataset voc --data_dir VOCdevkit_aug \\
        --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip --output_stride 8 --gpus 0,1

  --dataset and --data_dir default to the ones the checkpoint was trained with. Prints the per-class
  IoU table and writes a JSON (default ``<checkpoint>.eval-<split>[-ms][-flip][-os8][-limitN].json``).

Folder mode:

    python -m deeplab_gluon.evaluate --pred_dir runs/x/pred --gt_dir VOCdevkit_aug/VOC2012/SegmentationClass \\
        --ids_file VOCdevkit_aug/VOC2012/ImageSets/Segmentation/val.txt

  Predictions and ground truth pair up by file stem; both may be palette PNGs (read as indices), grey
  PNGs of indices, or VOC-coloured RGB PNGs.

Both print the per-class IoU table, pixAcc, mAcc, mIoU and fwIoU.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .checkpoint import CheckpointError
from .cli import (JobArgumentParser, UsageError, add_switch, fail, fail_all, open_checkpoint_flag, output_problem,
                  parse_scales_flag)
from .data import DATASETS
from .data.errors import DataError
from .data.folder import LABEL_SUFFIXES
from .data.palette import VOC_CLASSES, read_label
from .data.toy import TOY_CLASSES
from .metrics import ConfusionMatrix
from .models.resnet_v2 import OUTPUT_STRIDES

PROG = "evaluate"
NAMED_CLASS_LISTS = {"voc": VOC_CLASSES, "toy": TOY_CLASSES}
FOLDER_ONLY = ("pred_dir", "gt_dir", "num_classes", "classes", "ids_file")
CHECKPOINT_ONLY = ("dataset", "data_dir", "output_stride", "limit")


@dataclass
class EvaluateConfig:
    """Command-line settings of ``python -m deeplab_gluon.evaluate``: checkpoint mode or folder mode."""
    # checkpoint mode
    checkpoint: Optional[Path] = None       # a .ckpt file, or a run folder (its latest checkpoint)
    dataset: Optional[str] = None           # voc, folder or toy; default: the checkpoint's training config
    data_dir: Optional[Path] = None         # default: the checkpoint's training config
    split: str = "val"
    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False
    output_stride: Optional[int] = None     # default: the trained one; 8 for an OS16 model needs no retraining
    gpus: str = ""
    num_workers: int = 0
    limit: Optional[int] = None             # only the first N images of the split
    progress: bool = True
    # folder mode
    pred_dir: Optional[Path] = None
    gt_dir: Optional[Path] = None
    num_classes: Optional[int] = None       # default: the number of --classes names, else 21 (VOC)
    classes: Optional[str] = None           # "voc", "toy" or a file with one class name per line
    ids_file: Optional[Path] = None         # score only these ids (e.g. VOC's val.txt); default: every GT file
    # both
    ignore_label: Optional[int] = None      # default: the checkpoint's (checkpoint mode), 255 (folder mode)
    output: Optional[Path] = None           # the scores as JSON

    @property
    def checkpoint_mode(self) -> bool:
        return self.checkpoint is not None


# ---------------------------------------------------------------------------------------------- folder mode

def _label_files(folder: Path, role: str) -> Dict[str, Path]:
    """``{stem: path}`` of the label images in a folder."""
    if not folder.is_dir():
        raise DataError(f"{role} folder not found: {folder}")
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in LABEL_SUFFIXES and path.is_file():
            if path.stem in files:
                raise DataError(f"two {role} files with the stem {path.stem!r}: {files[path.stem]} and {path}")
            files[path.stem] = path
    return files


def score_folders(pred_dir, gt_dir, num_classes: int, ignore_label: int = 255, ids: Optional[Sequence[str]] = None,
                  progress: bool = True) -> ConfusionMatrix:
    """Accumulate the confusion matrix of every ground-truth file in ``gt_dir`` (or of ``ids``) against
    the prediction with the same stem in ``pred_dir``. Predictions without ground truth are ignored;
    ground truth without prediction is a ``DataError`` naming the missing file."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    gt_files = _label_files(gt_dir, "ground-truth")
    pred_files = _label_files(pred_dir, "prediction")
    if ids is not None:
        missing = [i for i in ids if i not in gt_files]
        if missing:
            raise DataError(f"ground truth not found: {gt_dir / missing[0]}.png ({len(missing)} ids missing)")
        gt_files = {i: gt_files[i] for i in ids}
    if not gt_files:
        raise DataError(f"no label images ({', '.join(LABEL_SUFFIXES)}) in {gt_dir}")
    for stem, gt_path in gt_files.items():  # before the long loop, so a missing file fails at once
        if stem not in pred_files:
            raise DataError(f"prediction not found: {pred_dir / stem}.png (for ground truth {gt_path})")

    metric = ConfusionMatrix(num_classes, ignore_label)
    for stem, gt_path in tqdm(gt_files.items(), desc="scoring", unit="img", disable=not progress):
        pred, gt = read_label(pred_files[stem]), read_label(gt_path)
        if pred.shape != gt.shape:
            raise DataError(f"prediction {pred_files[stem]} is {pred.shape[1]}x{pred.shape[0]} but ground truth "
                            f"{gt_path} is {gt.shape[1]}x{gt.shape[0]}")
        try:
            metric.update(pred, gt)
        except ValueError as error:
            raise DataError(f"{pred_files[stem]} vs {gt_path}: {error}") from None
    return metric


def resolve_class_names(spec: Optional[str], num_classes: Optional[int]) -> List[str]:
    """Class names from ``voc``, ``toy``, a file with one name per line, or ``class0..`` when None."""
    if spec is None:
        count = 21 if num_classes is None else num_classes
        return list(VOC_CLASSES) if count == len(VOC_CLASSES) else [f"class{i}" for i in range(count)]
    if spec in NAMED_CLASS_LISTS:
        names = list(NAMED_CLASS_LISTS[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"--classes is neither {' nor '.join(NAMED_CLASS_LISTS)} nor a file: {path}")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if num_classes is not None and num_classes != len(names):
        raise DataError(f"--num_classes {num_classes} but --classes {spec} has {len(names)} names")
    return names


def run_folder_mode(config: EvaluateConfig) -> int:
    names = resolve_class_names(config.classes, config.num_classes)
    ids = None
    if config.ids_file is not None:
        if not config.ids_file.is_file():
            raise DataError(f"ids file not found: {config.ids_file}")
        ids = [line.strip() for line in config.ids_file.read_text().splitlines() if line.strip()]
    ignore_label = 255 if config.ignore_label is None else config.ignore_label
    metric = score_folders(config.pred_dir, config.gt_dir, len(names), ignore_label, ids, progress=config.progress)
    print(metric.table(names))
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        config.output.write_text(json.dumps(metric.summary(names), indent=2) + "\n")
    return 0


# ------------------------------------------------------------------------------------------ checkpoint mode

def default_output_path(checkpoint: Path, split: str, scales: Sequence[float], flip: bool,
                        output_stride: Optional[int], trained_output_stride: Optional[int],
                        limit: Optional[int]) -> Path:
    """``<checkpoint>.eval-<split>[-ms][-flip][-os8][-limitN].json`` beside the checkpoint.

    The suffixes name what differs from a plain single-scale run at the trained output stride, so
    evaluations with different settings never overwrite each other.
    """
    name = f"{checkpoint.name}.eval-{split}"
    if tuple(scales) != (1.0,):
        name += "-ms"
    if flip:
        name += "-flip"
    if output_stride is not None and output_stride != trained_output_stride:
        name += f"-os{output_stride}"
    if limit is not None:
        name += f"-limit{limit}"
    return checkpoint.with_name(name + ".json")


@dataclass
class EvaluationPlan:
    """What checkpoint mode will do, resolved and checked before the network is built."""
    checkpoint: Path
    dataset_name: str
    data_dir: Path
    dataset: object
    classes: List[str]
    ignore_label: int
    output_stride: int
    trained_output_stride: int
    output: Path


def plan_evaluation(config: EvaluateConfig) -> EvaluationPlan:
    """Open the checkpoint's description and the dataset split; ``UsageError`` for anything missing.

    Only ``meta.json`` and the split's file list are read here; the weights load later.
    """
    from .data import EvalTransform, get_dataset

    checkpoint, meta = open_checkpoint_flag(config.checkpoint)
    model = meta["model"]
    trained = dict(meta.get("config") or {})
    dataset_name = config.dataset or trained.get("dataset")
    data_dir = config.data_dir or (Path(trained["data_dir"]) if trained.get("data_dir") else None)
    if dataset_name is None or data_dir is None:
        raise UsageError(f"{checkpoint} does not record its dataset; give --dataset and --data_dir")
    if dataset_name not in DATASETS:
        raise UsageError(f"--dataset: the checkpoint's dataset {dataset_name!r} is none of {', '.join(DATASETS)}")
    if not data_dir.is_dir():
        hint = f" (make it with `python scripts/make_toy_data.py --out {data_dir}`)" if dataset_name == "toy" else ""
        raise UsageError(f"--data_dir {data_dir} does not exist{hint}")
    num_classes = int(model["num_classes"])
    ignore_label = config.ignore_label if config.ignore_label is not None else int(meta.get("ignore_label", 255))
    extra = {}
    if dataset_name == "folder":
        names = meta.get("classes") or None
        extra = {"num_classes": num_classes, "classes": names if names and len(names) == num_classes else None,
                 "ignore_label": ignore_label}
    try:
        dataset = get_dataset(dataset_name, data_dir, config.split, transform=EvalTransform(), **extra)
    except DataError as err:
        raise UsageError(str(err)) from None
    if dataset.num_classes != num_classes:
        raise UsageError(f"{checkpoint} predicts {num_classes} classes but {dataset_name} dataset {data_dir} "
                         f"has {dataset.num_classes}")
    classes = list(meta.get("classes") or dataset.classes)
    if len(classes) != num_classes:
        classes = list(dataset.classes)
    if config.limit is not None:
        dataset = dataset.take(config.limit)
    trained_output_stride = int(model.get("output_stride", 16))
    output_stride = config.output_stride or trained_output_stride
    output = config.output or default_output_path(checkpoint, config.split, config.scales, config.flip,
                                                  config.output_stride, trained_output_stride, config.limit)
    problem = output_problem(output, "--output", folder=False)
    if problem:
        raise UsageError(problem)
    return EvaluationPlan(checkpoint, dataset_name, data_dir, dataset, classes, ignore_label, output_stride,
                          trained_output_stride, output)


def run_checkpoint_mode(config: EvaluateConfig) -> int:
    from .checkpoint import load_model
    from .devices import parse_devices
    from .inference import evaluate_dataset

    ctxs = parse_devices(config.gpus)
    plan = plan_evaluation(config)
    net, meta = load_model(plan.checkpoint, ctxs, output_stride=plan.output_stride)
    start = time.time()
    confusion = evaluate_dataset(net, plan.dataset, ctxs, len(plan.classes), plan.ignore_label, config.scales,
                                 config.flip, config.num_workers, progress=config.progress,
                                 desc=f"eval {plan.dataset_name}/{config.split}")
    seconds = time.time() - start
    summary = confusion.summary(plan.classes)
    report = {
        "checkpoint": str(plan.checkpoint),
        "iteration": meta.get("iteration"),
        "dataset": plan.dataset_name,
        "data_dir": str(plan.data_dir),
        "split": config.split,
        "num_images": len(plan.dataset),
        "settings": {"scales": list(config.scales), "flip": config.flip, "output_stride": plan.output_stride,
                     "trained_output_stride": plan.trained_output_stride, "devices": [str(c) for c in ctxs],
                     "ignore_label": plan.ignore_label, "limit": config.limit},
        "classes": plan.classes,
        "summary": summary,
        "confusion_matrix": confusion.matrix.tolist(),
        "seconds": round(seconds, 3),
    }
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(report, indent=1) + "\n")
    print(confusion.table(plan.classes))
    scales = ",".join(f"{s:g}" for s in config.scales)
    print(f"{plan.checkpoint} (iteration {meta.get('iteration')}) on {plan.dataset_name} {config.split}: "
          f"{len(plan.dataset)} images, scales {scales}{', flip' if config.flip else ''}, "
          f"output stride {plan.output_stride}, {seconds:.1f} s; "
          f"pixAcc {100 * (summary['pixAcc'] or 0):.2f}, mIoU {100 * (summary['mIoU'] or 0):.2f}")
    print(f"wrote {plan.output}")
    return 0


# ------------------------------------------------------------------------------------------- command line

def build_parser() -> JobArgumentParser:
    import argparse

    parser = JobArgumentParser(prog=f"python -m deeplab_gluon.{PROG}", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("checkpoint mode")
    model.add_argument("--checkpoint", type=Path, help="a .ckpt file, or a run folder (its latest checkpoint)")
    model.add_argument("--dataset", choices=DATASETS, help="default: the dataset the checkpoint was trained on")
    model.add_argument("--data_dir", type=Path, help="dataset root; default: the checkpoint's")
    model.add_argument("--split", default="val", help="split to score (default: %(default)s)")
    model.add_argument("--scales", type=parse_scales_flag, default=(1.0,),
                       help="comma-separated input scales whose softmaxes are averaged, e.g. 0.5,0.75,1.0,1.25,1.5,"
                            "1.75 (default: 1.0)")
    add_switch(model, "flip", "also score the left-right mirrored image and average")
    model.add_argument("--output_stride", type=int, choices=OUTPUT_STRIDES,
                       help="rebuild the network at this output stride (same weights); default: the trained one")
    model.add_argument("--gpus", default="", help="GPU ids like 0,1; empty or -1 for CPU; cpu:N for N CPU contexts")
    model.add_argument("--num_workers", type=int, default=0, help="data loading processes")
    model.add_argument("--limit", type=int, help="score only the first N images")
    add_switch(model, "progress", "show a progress bar with the running mIoU", default=True)
    folders = parser.add_argument_group("folder mode")
    folders.add_argument("--pred_dir", type=Path, help="predicted label PNGs")
    folders.add_argument("--gt_dir", type=Path, help="ground-truth label PNGs")
    folders.add_argument("--num_classes", type=int, help="default: number of --classes names, else 21")
    folders.add_argument("--classes", help="voc, toy, or a file with one class name per line")
    folders.add_argument("--ids_file", type=Path, help="score only the ids listed (one per line)")
    both = parser.add_argument_group("both modes")
    both.add_argument("--ignore_label", type=int, help="label of void pixels; default: the checkpoint's, else 255")
    both.add_argument("--output", "--out_json", dest="output", type=Path,
                      help="JSON file for the scores (checkpoint mode default: beside the checkpoint)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> EvaluateConfig:
    return EvaluateConfig(**vars(build_parser().parse_args(argv)))


def validate_config(config: EvaluateConfig) -> List[str]:
    """Every problem with the flags that can be seen without opening files, as one-line messages."""
    from .devices import parse_devices

    problems = []
    given = {name for name, value in asdict(config).items() if value is not None}
    if config.checkpoint_mode:
        mixed = sorted(given & set(FOLDER_ONLY))
        if mixed:
            problems.append(f"--{mixed[0]} belongs to folder mode; with --checkpoint give --dataset/--data_dir")
        try:
            parse_devices(config.gpus)
        except ValueError as err:
            problems.append(str(err))
        if config.num_workers < 0:
            problems.append(f"--num_workers cannot be negative, got {config.num_workers}")
        if config.limit is not None and config.limit < 1:
            problems.append(f"--limit must be at least 1, got {config.limit}")
    else:
        if config.pred_dir is None or config.gt_dir is None:
            problems.append("give --checkpoint (score a model) or both --pred_dir and --gt_dir (score PNGs)")
        mixed = sorted(given & set(CHECKPOINT_ONLY))
        if mixed:
            problems.append(f"--{mixed[0]} needs --checkpoint")
        if config.scales != (1.0,) or config.flip:
            problems.append("--scales and --flip need --checkpoint")
        if config.num_classes is not None and config.num_classes < 1:
            problems.append(f"--num_classes must be positive, got {config.num_classes}")
    if config.ignore_label is not None and not 0 <= config.ignore_label <= 255:
        problems.append(f"--ignore_label must be in 0..255, got {config.ignore_label}")
    if config.output is not None:
        problems.append(output_problem(config.output, "--output", folder=False))
    return [problem for problem in problems if problem]


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        config = parse_args(argv)
        problems = validate_config(config)
        if problems:
            return fail_all(PROG, problems)
        return run_checkpoint_mode(config) if config.checkpoint_mode else run_folder_mode(config)
    except (UsageError, DataError, CheckpointError, OSError) as err:
        return fail(PROG, err)


if __name__ == "__main__":
    sys.exit(main())
