"""Evaluation. For now: score a folder of predicted label PNGs against a folder of ground truth.

    python -m deeplab_gluon.evaluate --pred_dir runs/x/pred --gt_dir VOCdevkit_aug/VOC2012/SegmentationClass \
        --ids_file VOCdevkit_aug/VOC2012/ImageSets/Segmentation/val.txt

Predictions and ground truth pair up by file stem; both may be palette PNGs (read as indices), grey
PNGs of indices, or VOC-coloured RGB PNGs. Prints the per-class IoU table, pixAcc, mAcc, mIoU, fwIoU.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from .data.errors import DataError
from .data.folder import LABEL_SUFFIXES
from .data.palette import VOC_CLASSES, read_label
from .data.toy import TOY_CLASSES
from .metrics import ConfusionMatrix

NAMED_CLASS_LISTS = {"voc": VOC_CLASSES, "toy": TOY_CLASSES}


@dataclass
class EvaluateConfig:
    """Command-line settings of ``python -m deeplab_gluon.evaluate``."""
    pred_dir: Path
    gt_dir: Path
    num_classes: Optional[int] = None  # default: the number of --classes names, else 21 (VOC)
    ignore_label: int = 255
    classes: Optional[str] = None  # "voc", "toy" or a file with one class name per line
    ids_file: Optional[Path] = None  # score only these ids (e.g. VOC's val.txt); default: every GT file
    out_json: Optional[Path] = None  # also write the summary here


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


def parse_args(argv: Optional[Sequence[str]] = None) -> EvaluateConfig:
    parser = argparse.ArgumentParser(prog="python -m deeplab_gluon.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred_dir", type=Path, required=True, help="predicted label PNGs")
    parser.add_argument("--gt_dir", type=Path, required=True, help="ground-truth label PNGs")
    parser.add_argument("--num_classes", type=int, help="default: number of --classes names, else 21")
    parser.add_argument("--ignore_label", type=int, default=255)
    parser.add_argument("--classes", help="voc, toy, or a file with one class name per line")
    parser.add_argument("--ids_file", type=Path, help="score only the ids listed (one per line)")
    parser.add_argument("--out_json", type=Path, help="also write the scores as JSON")
    return EvaluateConfig(**vars(parser.parse_args(argv)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = parse_args(argv)
    try:
        names = resolve_class_names(config.classes, config.num_classes)
        ids = None
        if config.ids_file is not None:
            if not config.ids_file.is_file():
                raise DataError(f"ids file not found: {config.ids_file}")
            ids = [line.strip() for line in config.ids_file.read_text().splitlines() if line.strip()]
        metric = score_folders(config.pred_dir, config.gt_dir, len(names), config.ignore_label, ids)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(metric.table(names))
    if config.out_json is not None:
        config.out_json.write_text(json.dumps(metric.summary(names), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
