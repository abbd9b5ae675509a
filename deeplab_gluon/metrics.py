"""Segmentation metrics from one accumulated confusion matrix (pixAcc, mAcc, IoU, mIoU, fwIoU).

Every score derives from ``matrix[g, p]`` = number of valid pixels of ground-truth class ``g``
predicted as class ``p``, summed over the whole evaluation set (not averaged per batch or image):

- ``pixAcc = trace / total``
- ``acc[c] = matrix[c, c] / row_sum[c]``; ``mAcc`` = mean over classes present in the ground truth
- ``IoU[c] = matrix[c, c] / (row_sum[c] + col_sum[c] - matrix[c, c])``, NaN for a class absent from both
  ground truth and prediction; ``mIoU`` = mean over the other classes (a class that is predicted but
  never present counts, with IoU 0)
- ``fwIoU = sum_c (row_sum[c] / total) * IoU[c]``

With no valid pixel at all every score is NaN (no exception, no warning); ``summary()`` writes NaN
as None so it stays valid JSON.
"""
from __future__ import annotations

import csv
import math
from typing import Dict, List, Optional, Sequence

import numpy as np


def _as_numpy(array) -> np.ndarray:
    """numpy view of a numpy array or an MXNet NDArray (without importing MXNet here)."""
    return array.asnumpy() if hasattr(array, "asnumpy") else np.asarray(array)


def _finite_or_none(value: float) -> Optional[float]:
    return None if math.isnan(value) else float(value)


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) int64 confusion matrix; rows = ground truth,
    columns = prediction. Pixels whose ground truth is ``ignore_label`` are skipped."""

    def __init__(self, num_classes: int, ignore_label: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred, label) -> np.ndarray:
        """Add one batch. ``pred`` and ``label``: integer class indices of the same shape, e.g. (N, H, W)
        (numpy arrays or NDArrays; float arrays holding integers are accepted). Returns the batch's own
        (num_classes, num_classes) counts, which for one image are its per-image confusion matrix.

        Raises ValueError naming the offending values for ground-truth labels outside
        ``[0, num_classes)`` other than ``ignore_label``, and for predictions outside that range at
        valid pixels.
        """
        pred, label = _as_numpy(pred), _as_numpy(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        label = label.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        valid = label != self.ignore_label
        label, pred = label[valid], pred[valid]
        for name, values in (("ground-truth label", label), ("prediction", pred)):
            bad = (values < 0) | (values >= self.num_classes)
            if bad.any():
                shown = np.unique(values[bad])[:8].tolist()
                raise ValueError(f"{name} values {shown} outside 0..{self.num_classes - 1} "
                                 f"(ignore_label {self.ignore_label})")
        counts = np.bincount(label * self.num_classes + pred, minlength=self.num_classes ** 2)
        counts = counts.reshape(self.num_classes, self.num_classes)
        self.matrix += counts
        return counts

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix (e.g. from another process or device) into this one; returns self."""
        if (other.num_classes, other.ignore_label) != (self.num_classes, self.ignore_label):
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_label}) "
                             f"into a {self.num_classes}-class one (ignore {self.ignore_label})")
        self.matrix += other.matrix
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    @property
    def total(self) -> int:
        """Number of valid pixels counted."""
        return int(self.matrix.sum())

    def _ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """Element-wise ratio with NaN where the denominator is 0, without warnings."""
        numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
        out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out

    @staticmethod
    def _nanmean(values: np.ndarray) -> float:
        kept = values[~np.isnan(values)]
        return float(kept.mean()) if kept.size else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / valid pixels; NaN when no valid pixel was seen."""
        return float(self._ratio(np.trace(self.matrix), self.total))

    def class_accuracy(self) -> np.ndarray:
        """(num_classes,) recall per class; NaN for classes absent from the ground truth."""
        return self._ratio(np.diag(self.matrix), self.matrix.sum(axis=1))

    def mean_accuracy(self) -> float:
        """Mean of ``class_accuracy`` over classes present in the ground truth."""
        return self._nanmean(self.class_accuracy())

    def iou(self) -> np.ndarray:
        """(num_classes,) intersection over union; NaN for classes absent from both GT and prediction."""
        diagonal = np.diag(self.matrix)
        union = self.matrix.sum(axis=1) + self.matrix.sum(axis=0) - diagonal
        return self._ratio(diagonal, union)

    def miou(self) -> float:
        """Mean IoU over the classes that appear in the ground truth or the prediction."""
        return self._nanmean(self.iou())

    def fwiou(self) -> float:
        """Frequency-weighted IoU: per-class IoU weighted by the class's share of ground-truth pixels."""
        if self.total == 0:
            return float("nan")
        frequency = self.matrix.sum(axis=1) / self.total
        iou = self.iou()
        present = frequency > 0  # a present class always has a defined IoU
        return float((frequency[present] * iou[present]).sum())

    def _names(self, class_names: Optional[Sequence[str]]) -> Sequence[str]:
        if class_names is None:
            return [f"class{i}" for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        return list(class_names)

    def summary(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        """JSON-ready scores: ``pixAcc``, ``mAcc``, ``mIoU``, ``fwIoU`` (fractions in [0, 1]),
        ``IoU`` ``{class name: value}``, and ``num_pixels``. Undefined values (NaN) are None."""
        return {
            "pixAcc": _finite_or_none(self.pixel_accuracy()), "mAcc": _finite_or_none(self.mean_accuracy()),
            "mIoU": _finite_or_none(self.miou()), "fwIoU": _finite_or_none(self.fwiou()),
            "IoU": {name: _finite_or_none(value) for name, value in zip(self._names(class_names), self.iou())},
            "num_pixels": self.total,
        }

    def table(self, class_names: Optional[Sequence[str]] = None) -> str:
        """Per-class IoU in percent, one aligned line per class (``-`` for a class absent from both GT and
        prediction), then the pixAcc, mAcc, mIoU and fwIoU lines."""
        names = self._names(class_names)
        width = max(len("pixAcc"), *(len(name) for name in names))

        def percent(value: float) -> str:
            return f"{'-':>7}" if math.isnan(value) else f"{100 * value:7.2f}"

        lines = [f"{'class':<{width}}  {'IoU %':>7}", "-" * (width + 9)]
        lines += [f"{name:<{width}}  {percent(value)}" for name, value in zip(names, self.iou())]
        lines.append("-" * (width + 9))
        lines += [f"{label:<{width}}  {percent(value)}" for label, value in (
            ("pixAcc", self.pixel_accuracy()), ("mAcc", self.mean_accuracy()), ("mIoU", self.miou()),
            ("fwIoU", self.fwiou()))]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.total}, mIoU={self.miou():.4f})"


class PerImageScores:
    """The scores of each image, from the (num_classes, num_classes) counts :meth:`ConfusionMatrix.update`
    returns for it (so nothing is counted twice): pixel accuracy, mIoU over the classes present in the
    image's ground truth or prediction, and ground-truth pixels per class. NaN where an image has no
    valid pixel."""

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.ids: List[str] = []
        self.pixel_accuracy: List[float] = []
        self.miou: List[float] = []
        self.class_pixels: List[np.ndarray] = []  # (num_classes,) int64 each: ground-truth pixels per class

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, image_id: str, counts: np.ndarray) -> float:
        """Record one image from its (num_classes, num_classes) counts; returns its mIoU (NaN if undefined)."""
        one = ConfusionMatrix(self.num_classes)
        one.matrix = np.asarray(counts, dtype=np.int64).reshape(self.num_classes, self.num_classes)
        self.ids.append(str(image_id))
        self.pixel_accuracy.append(one.pixel_accuracy())
        self.miou.append(one.miou())
        self.class_pixels.append(one.matrix.sum(axis=1))
        return self.miou[-1]

    def worst(self, count: int) -> List[int]:
        """Indices of the ``count`` images of lowest mIoU, lowest first (ties: the earlier image first);
        images without a score are left out."""
        scored = [index for index, value in enumerate(self.miou) if not math.isnan(value)]
        return sorted(scored, key=lambda index: (self.miou[index], index))[:max(0, count)]

    def to_dict(self) -> Dict[str, list]:
        """JSON-ready ``{"ids", "pixAcc", "mIoU"}``, lists in image order (fractions; None for NaN)."""
        return {"ids": list(self.ids), "pixAcc": [_finite_or_none(v) for v in self.pixel_accuracy],
                "mIoU": [_finite_or_none(v) for v in self.miou]}

    def write_csv(self, path, class_names: Sequence[str]) -> None:
        """``id, pixAcc, mIoU, pixels_<class>...`` one row per image; scores as fractions, empty when undefined."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "pixAcc", "mIoU"] + [f"pixels_{name}" for name in class_names])
            for row in zip(self.ids, self.pixel_accuracy, self.miou, self.class_pixels):
                image_id, accuracy, miou, pixels = row
                writer.writerow([image_id, "" if math.isnan(accuracy) else f"{accuracy:.6f}",
                                 "" if math.isnan(miou) else f"{miou:.6f}"] + pixels.tolist())
