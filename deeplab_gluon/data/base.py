"""The item contract shared by every segmentation dataset: (RGB image, class-index label) pairs."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mxnet import gluon
from tqdm import tqdm

from .errors import DataError
from .image_io import read_image
from .palette import full_palette, read_label


class SegmentationDataset(gluon.data.Dataset):
    """A list of (image file, label file) pairs with class names.

    ``dataset[i]`` is ``(image, label)``: without a transform, ``image`` is (H, W, 3) uint8 RGB and
    ``label`` (H, W) uint8 class indices with ``ignore_label`` for void pixels; with a transform it is
    ``transform(image, label)``. Label values outside ``[0, num_classes)`` other than ``ignore_label``
    raise ``DataError`` naming the file, so a wrong ``num_classes`` fails at the first sample instead of
    training on silently clipped indices.

    ``palette`` is the (256, 3) uint8 RGB colour of each label value that predictions and masks of this
    dataset are drawn with (``palette.full_palette`` of the dataset's class colours). ``describe()`` is
    one line saying what was loaded from where, for the first line of a training log.

    The transform is kept in ``sample_transform`` (not ``transform``, which would hide
    ``gluon.data.Dataset.transform``).
    """

    name = "dataset"  # what describe() calls it: voc, folder, cityscapes, ...
    # Subclasses set these on the instance: the folder and split loaded, and where the list and the
    # labels came from (e.g. which SBD layout), for describe().
    root: Optional[Path] = None
    split: Optional[str] = None
    source: str = ""
    label_table: Optional[np.ndarray] = None  # (256,) uint8: file value -> class (Cityscapes ids, ADE20K's shift)

    def __init__(self, ids: Sequence[str], image_paths: Sequence[Path], label_paths: Sequence[Path],
                 classes: Sequence[str], ignore_label: int = 255, transform: Optional[Callable] = None,
                 class_colours: Optional[Sequence[Sequence[int]]] = None):
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
        self.palette = full_palette(class_colours)

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
        """Read one label file as (H, W) uint8 class indices (through ``label_table`` when set); subclasses
        add formats (e.g. SBD .mat)."""
        label = read_label(path)
        return label if self.label_table is None else self.label_table[label]

    def read_label_at(self, index: int) -> np.ndarray:
        """The (H, W) uint8 label of sample ``index``, checked: every value is a class or ``ignore_label``."""
        label_path = self.label_path(index)
        label = self.load_label(label_path)
        bad = (label >= self.num_classes) & (label != self.ignore_label)
        if bad.any():
            values = np.unique(label[bad])[:8].tolist()
            raise DataError(f"{label_path}: label values {values} are neither classes 0..{self.num_classes - 1} "
                            f"nor ignore_label {self.ignore_label}")
        return label

    def bad_samples(self, progress: bool = False) -> List[Tuple[int, str]]:
        """``(index, why)`` of every sample whose label does not read or fit, or whose image is no image
        file OpenCV reads (its header only: decoding every image would cost minutes on a large split)."""
        bad = []
        for index in tqdm(range(len(self)), desc=f"checking {self.split}", unit="file", leave=False,
                          disable=None if progress else True):  # None: shown on a terminal only
            try:
                self.read_label_at(index)
                if not cv2.haveImageReader(str(self.image_path(index))):
                    raise DataError(f"{self.image_path(index)}: not an image file OpenCV can read")
            except DataError as err:
                bad.append((index, str(err)))
        return bad

    def subset(self, indices: Sequence[int]) -> "SegmentationDataset":
        """The same dataset restricted to the samples at ``indices``, in that order."""
        subset = copy.copy(self)
        subset.ids = [self.ids[i] for i in indices]
        subset._image_paths = [self._image_paths[i] for i in indices]
        subset._label_paths = [self._label_paths[i] for i in indices]
        return subset

    def read_sample(self, index: int):
        """The untransformed ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)`` pair, checked."""
        image_path = self.image_path(index)
        image = read_image(image_path)
        label = self.read_label_at(index)
        if image.shape[:2] != label.shape:
            raise DataError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                            f"{self.label_path(index)} is {label.shape[1]}x{label.shape[0]}")
        return image, label

    def __getitem__(self, index: int):
        image, label = self.read_sample(index)
        return self.sample_transform(image, label) if self.sample_transform is not None else (image, label)

    def describe(self) -> str:
        """One line: ``voc 'train_aug': 10582 images, 21 classes, in VOCdevkit_aug (<source>)``."""
        where = f", in {self.root}" if self.root is not None else ""
        source = f" ({self.source})" if self.source else ""
        return f"{self.name} {self.split!r}: {len(self)} images, {self.num_classes} classes{where}{source}"

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

