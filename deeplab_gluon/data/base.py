"""The item contract shared by every segmentation dataset: (RGB image, class-index label) pairs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from mxnet import gluon

from .errors import DataError
from .image_io import read_image
from .palette import read_label


class SegmentationDataset(gluon.data.Dataset):
    """A list of (image file, label file) pairs with class names.

    ``dataset[i]`` is ``(image, label)``: without a transform, ``image`` is (H, W, 3) uint8 RGB and
    ``label`` (H, W) uint8 class indices with ``ignore_label`` for void pixels; with a transform it is
    ``transform(image, label)``. Label values outside ``[0, num_classes)`` other than ``ignore_label``
    raise ``DataError`` naming the file, so a wrong ``num_classes`` fails at the first sample instead of
    training on silently clipped indices.

    The transform is kept in ``sample_transform`` (not ``transform``, which would hide
    ``gluon.data.Dataset.transform``).
    """

    def __init__(self, ids: Sequence[str], image_paths: Sequence[Path], label_paths: Sequence[Path],
                 classes: Sequence[str], ignore_label: int = 255, transform: Optional[Callable] = None):
        if not len(ids) == len(image_paths) == len(label_paths):
            raise ValueError("ids, image_paths and label_paths must have the same length")
        if not 0 <= ignore_label <= 255:
            raise ValueError(f"ignore_label must lie in 0..255 (labels are uint8), got {ignore_label}")
        if len(classes) < 1:
            raise ValueError("a dataset needs at least one class")
        self.ids: List[str] = list(ids)
        self._image_paths = [Path(p) for p in image_paths]
        self._label_paths = [Path(p) for p in label_paths]
        self.classes: List[str] = list(classes)
        self.ignore_label = int(ignore_label)
        self.sample_transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self._image_paths[index]

    def label_path(self, index: int) -> Path:
        return self._label_paths[index]

    def load_label(self, path: Path) -> np.ndarray:
        """Read one label file as (H, W) uint8 class indices; subclasses add formats (e.g. SBD .mat)."""
        return read_label(path)

    def read_sample(self, index: int):
        """The untransformed ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)`` pair, checked."""
        image_path, label_path = self.image_path(index), self.label_path(index)
        image = read_image(image_path)
        label = self.load_label(label_path)
        if image.shape[:2] != label.shape:
            raise DataError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                            f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        bad = (label >= self.num_classes) & (label != self.ignore_label)
        if bad.any():
            values = np.unique(label[bad])[:8].tolist()
            raise DataError(f"{label_path}: label values {values} are neither classes 0..{self.num_classes - 1} "
                            f"nor ignore_label {self.ignore_label}")
        return image, label

    def __getitem__(self, index: int):
        image, label = self.read_sample(index)
        if self.sample_transform is not None:
            return self.sample_transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes, "
                f"ignore_label={self.ignore_label})")


def list_dir_files(directory: Path) -> set:
    """Names of the entries in a directory (one ``scandir``, cheaper than a stat per expected file);
    empty when the directory does not exist."""
    try:
        with os.scandir(directory) as entries:
            return {entry.name for entry in entries}
    except FileNotFoundError:
        return set()


def read_id_list(path: Path) -> List[str]:
    """Non-empty, non-comment lines of a split list file, stripped."""
    if not path.is_file():
        raise DataError(f"split list not found: {path}")
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
