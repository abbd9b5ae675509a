"""Datasets (VOC + SBD, image/label folders, synthetic toy shapes), transforms and label I/O.

Every dataset yields ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)`` without a transform and
``transform(image, label)`` with one; see ``base.SegmentationDataset`` for the full contract.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

from .base import SegmentationDataset
from .errors import DataError
from .folder import SegFolderDataset
from .image_io import read_image, write_image
from .splits import ALL_IMAGES, NO_SPLIT, is_all_images, wants_split
from .palette import VOC_CLASSES, colorize, read_label, save_index_png, voc_palette
from .toy import TOY_CLASSES, make_toy_dataset, render_toy_scene
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize_image
from .voc import VOC_SPLITS, VOCSegDataset, compute_train_aug_ids

DATASETS = ("voc", "folder", "toy")


def get_dataset(name: str, root: Union[str, Path], split: Optional[str], transform: Optional[Callable] = None,
                **kwargs) -> SegmentationDataset:
    """Build a dataset by name.

    - ``voc``: ``VOCSegDataset(root, split, transform, **kwargs)``; root is ``VOCdevkit_aug/`` or ``VOC2012/``.
    - ``folder``: ``SegFolderDataset(root, split, transform, **kwargs)``; pass ``num_classes`` or ``classes``.
    - ``toy``: the synthetic shapes written by ``make_toy_dataset(root)`` (``scripts/make_toy_data.py``),
      read as ``VOCSegDataset(root, split, transform, classes=TOY_CLASSES)``.
    """
    if name == "voc":
        return VOCSegDataset(root, split, transform, **kwargs)
    if name == "folder":
        return SegFolderDataset(root, split, transform, **kwargs)
    if name == "toy":
        if not (Path(root) / "VOC2012").is_dir():
            raise DataError(f"no toy dataset at {root}: create it with "
                            f"`python scripts/make_toy_data.py --out {root}`")
        return VOCSegDataset(root, split, transform, classes=kwargs.pop("classes", TOY_CLASSES), **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


__all__ = ["ALL_IMAGES", "NO_SPLIT", "is_all_images", "wants_split", "DATASETS", "DataError", "EvalTransform", "IMAGENET_MEAN", "IMAGENET_STD", "SegFolderDataset",
           "SegmentationDataset", "TOY_CLASSES", "TrainTransform", "VOCSegDataset", "VOC_CLASSES", "VOC_SPLITS",
           "colorize", "compute_train_aug_ids", "get_dataset", "make_toy_dataset", "normalize_image",
           "read_image", "read_label", "render_toy_scene", "save_index_png", "voc_palette", "write_image"]
