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

Both print the per-class IoU table, pixAcc, mAcc, mIoU and fwIoU. ``--report DIR`` also writes an HTML
report one opens from disk (``DIR/index.html``: scores, per-class IoU charts, the confusion matrix, the
``--report_worst`` worst images, per_image.csv, the run's training curves); the JSON carries per-image
scores (format 2), which ``python -m deeplab_gluon.compare`` reads.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .checkpoint import Checkpoint
from .cli import UsageError, changed_flags, checkpoint_flag, flag, output_problem, parse_scales, run_job
from .data import DATASETS, NAMED_CLASSES, EvalTransform, get_dataset, read_class_list, read_image
from .data.errors import DataError
from .data.folder import IMAGE_SUFFIXES, LABEL_SUFFIXES, files_by_stem
from .data.palette import VOC_CLASSES, full_palette, read_label
from .data.registry import NAMED_COLOURS, checkpoint_palette, ignore_label_problem
from .devices import parse_devices
from .inference import evaluate_dataset
from .metrics import ConfusionMatrix, PerImageScores
from .models.spec import OUTPUT_STRIDES
from .precision import InferenceFlags, prepare_checkpoint
from .report import EVALUATION_FORMAT, WorstImage, WorstImages, write_evaluation_report
from .runlog import run_folder_of

PROG = "evaluate"
CHECKPOINT_MODE, FOLDER_MODE, BOTH = "checkpoint mode", "folder mode", "both modes"


@dataclass
class EvaluateConfig(InferenceFlags):
    """Command-line settings of ``python -m deeplab_gluon.evaluate``: checkpoint mode or folder mode."""

    checkpoint: Optional[Path] = field(default=None, metadata=flag(
        "a .ckpt file, or a run folder (its latest checkpoint)", group=CHECKPOINT_MODE))
    dataset: Optional[str] = field(default=None, metadata=flag(
        "default: the dataset the checkpoint was trained on", choices=DATASETS, group=CHECKPOINT_MODE))
    data_dir: Optional[Path] = field(default=None, metadata=flag(
        "dataset root; default: the checkpoint's", group=CHECKPOINT_MODE))
    split: str = field(default="val", metadata=flag("split to score", group=CHECKPOINT_MODE))
    scales: Tuple[float, ...] = field(default=(1.0,), metadata=flag(
        "comma-separated input scales whose softmaxes are averaged, e.g. 0.5,0.75,1.0,1.25,1.5,1.75",
        parse=parse_scales, group=CHECKPOINT_MODE))
    flip: bool = field(default=False, metadata=flag(
        "also score the left-right mirrored image and average", group=CHECKPOINT_MODE))
    output_stride: Optional[int] = field(default=None, metadata=flag(
        "rebuild the network at this output stride (same weights); default: the trained one",
        choices=OUTPUT_STRIDES, group=CHECKPOINT_MODE))
    gpus: str = field(default="", metadata=flag(
        "GPU ids like 0,1; empty or -1 for CPU; cpu:N for N CPU contexts", group=CHECKPOINT_MODE))
    num_workers: int = field(default=0, metadata=flag("data loading processes", group=CHECKPOINT_MODE))
    limit: Optional[int] = field(default=None, metadata=flag("score only the first N images", group=CHECKPOINT_MODE))
    progress: bool = field(default=True, metadata=flag(
        "show a progress bar with the running mIoU", group=BOTH))
    pred_dir: Optional[Path] = field(default=None, metadata=flag("predicted label PNGs", group=FOLDER_MODE))
    gt_dir: Optional[Path] = field(default=None, metadata=flag("ground-truth label PNGs", group=FOLDER_MODE))
    num_classes: Optional[int] = field(default=None, metadata=flag(
        "default: number of --classes names, else 21", group=FOLDER_MODE))
    classes: Optional[str] = field(default=None, metadata=flag(
        "a dataset's classes (voc, toy, cityscapes, ade20k) or a class list file (name [r g b] a line)",
        group=FOLDER_MODE))
    ids_file: Optional[Path] = field(default=None, metadata=flag(
        "score only the ids listed (one per line); default: every ground-truth file", group=FOLDER_MODE))
    image_dir: Optional[Path] = field(default=None, metadata=flag(
        "the images the predictions were made from (paired by file stem), shown in --report's panels",
        group=FOLDER_MODE))
    ignore_label: Optional[int] = field(default=None, metadata=flag(
        "label of void pixels; default: the checkpoint's, else 255", group=BOTH))
    output: Optional[Path] = field(default=None, metadata=flag(
        "JSON file for the scores (checkpoint mode default: beside the checkpoint)", aliases=("out_json",),
        group=BOTH))
    report: Optional[Path] = field(default=None, metadata=flag(
        "also write an HTML report in this folder (index.html, opens from disk)", group=BOTH))
    report_worst: int = field(default=12, metadata=flag(
        "the report shows this many worst images by per-image mIoU", group=BOTH))

    @property
    def checkpoint_mode(self) -> bool:
        return self.checkpoint is not None

    def problems(self) -> List[str]:
        """Every problem with the flags that can be seen without opening files, as one-line messages."""
        problems = []
        if self.checkpoint_mode:
            if mixed := changed_flags(self, (FOLDER_MODE,)):
                problems.append(f"{mixed[0]} belongs to folder mode; with --checkpoint give --dataset/--data_dir")
            try:
                parse_devices(self.gpus)
            except ValueError as err:
                problems.append(str(err))
            if self.num_workers < 0:
                problems.append(f"--num_workers cannot be negative, got {self.num_workers}")
            if self.limit is not None and self.limit < 1:
                problems.append(f"--limit must be at least 1, got {self.limit}")
            problems += self.precision_problems()
        else:
            if self.pred_dir is None or self.gt_dir is None:
                problems.append("give --checkpoint (score a model) or both --pred_dir and --gt_dir (score PNGs)")
            # every checkpoint-mode flag given (not only those defaulting to None) is refused: folder mode
            # would silently ignore --split, --gpus, --num_workers, --scales, --precision, ...
            if mixed := changed_flags(self, (CHECKPOINT_MODE, "precision")):
                problems.append(f"{mixed[0]} needs --checkpoint (folder mode scores PNGs and does not use it)")
            if self.num_classes is not None and self.num_classes < 1:
                problems.append(f"--num_classes must be positive, got {self.num_classes}")
        if self.ignore_label is not None and not 0 <= self.ignore_label <= 255:
            problems.append(f"--ignore_label must be in 0..255, got {self.ignore_label}")
        if self.output is not None:
            problems.append(output_problem(self.output, "--output", folder=False))
        if self.report is not None:
            problems.append(output_problem(self.report, "--report", folder=True))
        if self.report_worst < 0:
            problems.append(f"--report_worst cannot be negative, got {self.report_worst}")
        return [problem for problem in problems if problem]


# ---------------------------------------------------------------------------------------------- folder mode

def pair_label_files(pred_dir, gt_dir, ids: Optional[Sequence[str]] = None) -> Dict[str, Tuple[Path, Path]]:
    """``{stem: (prediction, ground truth)}`` for every ground-truth file in ``gt_dir`` (or for ``ids``).

    Predictions without ground truth are ignored; ground truth without prediction is a ``DataError``
    naming the missing file, found before any file is read.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    gt_files = files_by_stem(gt_dir, LABEL_SUFFIXES, "ground-truth")
    pred_files = files_by_stem(pred_dir, LABEL_SUFFIXES, "prediction")
    if ids is not None:
        if missing := [i for i in ids if i not in gt_files]:
            raise DataError(f"ground truth not found: {gt_dir / missing[0]}.png ({len(missing)} ids missing)")
        gt_files = {i: gt_files[i] for i in ids}
    if not gt_files:
        raise DataError(f"no label images ({', '.join(LABEL_SUFFIXES)}) in {gt_dir}")
    for stem, gt_path in gt_files.items():
        if stem not in pred_files:
            raise DataError(f"prediction not found: {pred_dir / stem}.png (for ground truth {gt_path})")
    return {stem: (pred_files[stem], gt_path) for stem, gt_path in gt_files.items()}


def score_pairs(pairs: Dict[str, Tuple[Path, Path]], num_classes: int, ignore_label: int = 255,
                progress: bool = True, on_image=None) -> ConfusionMatrix:
    """The confusion matrix of each prediction against its ground truth; ``DataError`` naming a pair
    that cannot be read or compared. ``on_image(stem, prediction (H, W), ground truth (H, W), counts (C, C))``,
    when given, is called for each pair in order with its own confusion counts."""
    metric = ConfusionMatrix(num_classes, ignore_label)
    for stem, (pred_path, gt_path) in tqdm(pairs.items(), desc="scoring", unit="img", disable=not progress):
        pred, gt = read_label(pred_path), read_label(gt_path)
        if pred.shape != gt.shape:
            raise DataError(f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} but ground truth "
                            f"{gt_path} is {gt.shape[1]}x{gt.shape[0]}")
        try:
            counts = metric.update(pred, gt)
        except ValueError as error:
            raise DataError(f"{pred_path} vs {gt_path}: {error}") from None
        if on_image is not None:
            on_image(stem, pred, gt, counts)
    return metric


def score_folders(pred_dir, gt_dir, num_classes: int, ignore_label: int = 255, ids: Optional[Sequence[str]] = None,
                  progress: bool = True) -> ConfusionMatrix:
    """Accumulate the confusion matrix of every ground-truth file in ``gt_dir`` (or of ``ids``) against
    the prediction with the same stem in ``pred_dir`` (:func:`pair_label_files`, then :func:`score_pairs`)."""
    return score_pairs(pair_label_files(pred_dir, gt_dir, ids), num_classes, ignore_label, progress)


def resolve_class_names(spec: Optional[str], num_classes: Optional[int]) -> List[str]:
    """Class names from a dataset's name (``voc``, ``cityscapes``...), a class list file (``name [r g b]`` a line,
    as a folder dataset's ``classes.txt``), or ``class0..`` when None."""
    if spec is None:
        count = 21 if num_classes is None else num_classes
        return list(VOC_CLASSES) if count == len(VOC_CLASSES) else [f"class{i}" for i in range(count)]
    if spec in NAMED_CLASSES:
        names = list(NAMED_CLASSES[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"--classes is neither a dataset ({', '.join(NAMED_CLASSES)}) nor a file: {path}")
        names = read_class_list(path)[0]
    if num_classes is not None and num_classes != len(names):
        raise DataError(f"--num_classes {num_classes} but --classes {spec} has {len(names)} names")
    return names


class PerImageCollector:
    """The ``on_image`` hook of an evaluation: per-image scores of every image, and the predictions of the
    ``worst`` lowest-scoring ones for the report's panels."""

    def __init__(self, num_classes: int, worst: int):
        self.scores = PerImageScores(num_classes)
        self.worst = WorstImages(worst)

    def __call__(self, image_id: str, prediction, label, counts) -> None:
        miou = self.scores.add(image_id, counts)
        self.worst.offer(len(self.scores) - 1, miou, prediction, np.asarray(label).astype(np.uint8))

    def worst_images(self, read_image_at=None) -> List[WorstImage]:
        """The kept worst images, lowest mIoU first; ``read_image_at(index)`` gives an image's RGB picture (or None)."""
        return [WorstImage(index, self.scores.ids[index], miou, self.scores.pixel_accuracy[index], prediction, label,
                           read_image_at(index) if read_image_at else None)
                for index, miou, prediction, label in self.worst.kept()]


def folder_palette(classes: Optional[str]) -> np.ndarray:
    """Colours for folder mode's report: a named dataset's, a class list's when it gives every class one, else VOC's."""
    if classes in NAMED_COLOURS:
        return full_palette(NAMED_COLOURS[classes])
    if classes is not None and Path(classes).is_file():
        colours = read_class_list(Path(classes))[1]
        if colours and all(colour is not None for colour in colours):
            return full_palette(colours)
    return full_palette(None)


def run_folder_mode(config: EvaluateConfig) -> int:
    try:  # everything named by a flag is found before any file is scored: a problem here is a usage error
        names = resolve_class_names(config.classes, config.num_classes)
        ids = None
        if config.ids_file is not None:
            if not config.ids_file.is_file():
                raise DataError(f"ids file not found: {config.ids_file}")
            ids = [line.strip() for line in config.ids_file.read_text().splitlines() if line.strip()]
        pairs = pair_label_files(config.pred_dir, config.gt_dir, ids)
        images = {}
        if config.image_dir is not None:
            images = files_by_stem(config.image_dir, IMAGE_SUFFIXES, "image")
            if missing := [stem for stem in pairs if stem not in images]:
                raise DataError(f"image not found: {config.image_dir / missing[0]}.* ({len(missing)} missing)")
    except (DataError, OSError, UnicodeDecodeError) as err:
        raise UsageError(str(err)) from None
    ignore_label = 255 if config.ignore_label is None else config.ignore_label
    collector = PerImageCollector(len(names), config.report_worst if config.report else 0)
    metric = score_pairs(pairs, len(names), ignore_label, progress=config.progress, on_image=collector)
    print(metric.table(names))
    summary = metric.summary(names)
    # the scores stay at the top level too, where the first folder-mode JSON had them
    evaluation = {**summary, "format": EVALUATION_FORMAT, "pred_dir": str(config.pred_dir),
                  "gt_dir": str(config.gt_dir), "num_images": len(pairs), "settings": {"ignore_label": ignore_label},
                  "classes": names, "summary": summary, "confusion_matrix": metric.matrix.tolist(),
                  "per_image": collector.scores.to_dict()}
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        config.output.write_text(json.dumps(evaluation, indent=2) + "\n")
    if config.report is not None:
        stems = list(pairs)
        read = (lambda index: read_image(images[stems[index]])) if images else None
        page = write_evaluation_report(config.report, evaluation, collector.scores, collector.worst_images(read),
                                       folder_palette(config.classes), progress=config.progress)
        print(f"wrote {page}")
    return 0


# ------------------------------------------------------------------------------------------ checkpoint mode

def default_output_path(checkpoint: Path, split: str, scales: Sequence[float], flip: bool,
                        output_stride: Optional[int], trained_output_stride: Optional[int],
                        limit: Optional[int], precision: str = "fp32") -> Path:
    """``<checkpoint>.eval-<split>[-ms][-flip][-os8][-limitN][-int8].json`` beside the checkpoint.

    The suffixes name what differs from a plain single-scale run at the trained output stride, so
    evaluations with different settings never overwrite each other.
    """
    suffixes = {"-ms": tuple(scales) != (1.0,), "-flip": flip,
                f"-os{output_stride}": output_stride is not None and output_stride != trained_output_stride,
                f"-limit{limit}": limit is not None, f"-{precision}": precision != "fp32"}
    wanted = "".join(suffix for suffix, applies in suffixes.items() if applies)
    return checkpoint.with_name(f"{checkpoint.name}.eval-{split}{wanted}.json")


@dataclass
class EvaluationPlan:
    """What checkpoint mode will do, resolved and checked before the network is built."""
    checkpoint: Checkpoint
    dataset_name: str
    data_dir: Path
    dataset: object
    classes: List[str]
    ignore_label: int
    output_stride: int
    output: Path


def plan_evaluation(config: EvaluateConfig) -> EvaluationPlan:
    """Open the checkpoint's description and the dataset split; ``UsageError`` for anything missing.

    Only ``meta.json`` and the split's file list are read here; the weights load later.
    """
    checkpoint = checkpoint_flag(config.checkpoint)
    spec, meta = checkpoint.spec, checkpoint.meta
    trained = dict(meta.get("config") or {})
    dataset_name = config.dataset or trained.get("dataset")
    data_dir = config.data_dir or (Path(trained["data_dir"]) if trained.get("data_dir") else None)
    if dataset_name is None or data_dir is None:
        raise UsageError(f"{checkpoint.path} does not record its dataset; give --dataset and --data_dir")
    if dataset_name not in DATASETS:
        raise UsageError(f"--dataset: the checkpoint's dataset {dataset_name!r} is none of {', '.join(DATASETS)}")
    if not data_dir.is_dir():
        hint = f" (make it with `python scripts/make_toy_data.py --out {data_dir}`)" if dataset_name == "toy" else ""
        raise UsageError(f"--data_dir {data_dir} does not exist{hint}")
    if problem := ignore_label_problem(dataset_name, config.ignore_label):
        raise UsageError(problem)
    num_classes = spec.num_classes
    ignore_label = config.ignore_label if config.ignore_label is not None else int(meta.get("ignore_label", 255))
    extra = {}
    if dataset_name == "folder":
        names = checkpoint.classes if len(checkpoint.classes) == num_classes else None
        extra = {"num_classes": num_classes, "classes": names, "ignore_label": ignore_label}
    try:
        dataset = get_dataset(dataset_name, data_dir, config.split, transform=EvalTransform(), **extra)
    except DataError as err:
        raise UsageError(str(err)) from None
    if dataset.num_classes != num_classes:
        raise UsageError(f"{checkpoint.path} predicts {num_classes} classes but {dataset_name} dataset {data_dir} "
                         f"has {dataset.num_classes}")
    classes = checkpoint.classes if len(checkpoint.classes) == num_classes else list(dataset.classes)
    if config.limit is not None:  # subset, not take: the report needs the samples' ids and pictures
        dataset = dataset.subset(range(min(config.limit, len(dataset))))
    output_stride = config.output_stride or spec.output_stride
    output = config.output or default_output_path(checkpoint.path, config.split, config.scales, config.flip,
                                                  config.output_stride, spec.output_stride, config.limit,
                                                  config.precision)
    if problem := output_problem(output, "--output", folder=False):
        raise UsageError(problem)
    return EvaluationPlan(checkpoint, dataset_name, data_dir, dataset, classes, ignore_label, output_stride, output)


def run_checkpoint_mode(config: EvaluateConfig) -> int:
    ctxs = parse_devices(config.gpus)
    plan = plan_evaluation(config)
    net = prepare_checkpoint(plan.checkpoint, ctxs, plan.output_stride, config, plan.dataset_name, plan.data_dir)
    print(net.describe())
    start = time.time()
    ids = list(getattr(plan.dataset, "ids", range(len(plan.dataset))))
    collector = PerImageCollector(len(plan.classes), config.report_worst if config.report else 0)
    confusion = evaluate_dataset(net, plan.dataset, ctxs, len(plan.classes), plan.ignore_label, config.scales,
                                 config.flip, config.num_workers, progress=config.progress,
                                 desc=f"eval {plan.dataset_name}/{config.split}",
                                 on_image=lambda index, *scored: collector(str(ids[index]), *scored))
    seconds = time.time() - start
    summary = confusion.summary(plan.classes)
    report = {
        "format": EVALUATION_FORMAT, "model": plan.checkpoint.spec.name,
        "checkpoint": str(plan.checkpoint.path), "iteration": plan.checkpoint.iteration,
        "dataset": plan.dataset_name, "data_dir": str(plan.data_dir), "split": config.split,
        "num_images": len(plan.dataset),
        "settings": {"scales": list(config.scales), "flip": config.flip, "output_stride": plan.output_stride,
                     "trained_output_stride": plan.checkpoint.spec.output_stride, "devices": [str(c) for c in ctxs],
                     "ignore_label": plan.ignore_label, "limit": config.limit, "precision": net.precision,
                     "precision_notes": net.notes},
        "classes": plan.classes, "summary": summary, "confusion_matrix": confusion.matrix.tolist(),
        "seconds": round(seconds, 3), "per_image": collector.scores.to_dict(),
    }
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(report, indent=1) + "\n")
    print(confusion.table(plan.classes))
    scales = ",".join(f"{s:g}" for s in config.scales)
    print(f"{plan.checkpoint.path} (iteration {plan.checkpoint.iteration}) on {plan.dataset_name} {config.split}: "
          f"{len(plan.dataset)} images, scales {scales}{', flip' if config.flip else ''}, "
          f"output stride {plan.output_stride}, {net.precision}, {seconds:.1f} s; "
          f"pixAcc {100 * (summary['pixAcc'] or 0):.2f}, mIoU {100 * (summary['mIoU'] or 0):.2f}")
    print(f"wrote {plan.output}")
    if config.report is not None:
        worst = collector.worst_images(lambda index: plan.dataset.read_sample(index)[0])
        palette = getattr(plan.dataset, "palette", None)
        page = write_evaluation_report(config.report, report, collector.scores, worst,
                                       palette if palette is not None else checkpoint_palette(plan.checkpoint.meta),
                                       run_log=run_folder_of(plan.checkpoint.path) / "log.jsonl",
                                       progress=config.progress)
        print(f"wrote {page}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    def work(config: EvaluateConfig) -> int:
        return run_checkpoint_mode(config) if config.checkpoint_mode else run_folder_mode(config)

    return run_job(PROG, EvaluateConfig, work, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
