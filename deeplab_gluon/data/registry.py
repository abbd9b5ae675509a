"""Datasets by name (``--dataset``): how to build each, and its class names and colours.

Class names and colours travel with a trained model: the trainer stores ``dataset.classes`` and
``palette_colours(dataset)`` in every checkpoint's meta, and :func:`checkpoint_palette` gives predict,
evaluate and export the palette to draw its predictions with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .ade20k import ADE20K_CLASSES, ADE20K_COLOURS, ADE20K_IGNORE_LABEL, ADE20KDataset
from .base import SegmentationDataset
from .cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLOURS, CITYSCAPES_IGNORE_LABEL, CityscapesDataset
from .errors import DataError
from .folder import SegFolderDataset
from .palette import VOC_CLASSES, full_palette
from .splits import ALL_IMAGES
from .toy import TOY_CLASSES
from .voc import VOCSegDataset

DATASETS = ("voc", "folder", "toy", "cityscapes", "ade20k")
# each dataset's own training split (a folder dataset without train.txt trains on "all" its images)
# the datasets built as Class(root, split, transform, **kwargs); toy is VOC with its own classes
DATASET_CLASSES = {"voc": VOCSegDataset, "folder": SegFolderDataset, "cityscapes": CityscapesDataset,
                   "ade20k": ADE20KDataset}
TRAIN_SPLITS = {"voc": "train_aug", "folder": "train", "toy": "train", "cityscapes": "train", "ade20k": "train"}

# The fixed class lists (a folder dataset's come from its classes.txt); colours None: the VOC palette.
NAMED_CLASSES: Dict[str, Tuple[str, ...]] = {"voc": VOC_CLASSES, "toy": TOY_CLASSES,
                                            "cityscapes": CITYSCAPES_CLASSES, "ade20k": ADE20K_CLASSES}
NAMED_COLOURS: Dict[str, Optional[Tuple[Tuple[int, int, int], ...]]] = {
    "voc": None, "toy": None, "cityscapes": CITYSCAPES_COLOURS, "ade20k": ADE20K_COLOURS}


def default_train_split(name: str, root: Union[str, Path]) -> str:
    """The split a dataset trains on when ``--train_split`` is not given (a folder dataset without
    ``train.txt``: ``all`` its images)."""
    return ALL_IMAGES if name == "folder" and not (Path(root) / "train.txt").is_file() else TRAIN_SPLITS[name]


# The void label each named dataset's reader writes (a folder dataset takes --ignore_label); VOC's is 255.
VOID_LABELS: Dict[str, int] = {"voc": 255, "toy": 255, "cityscapes": CITYSCAPES_IGNORE_LABEL,
                               "ade20k": ADE20K_IGNORE_LABEL}


def ignore_label_problem(name: str, ignore_label: Optional[int]) -> str:
    """A one-line refusal when ``--ignore_label`` differs from the void label that dataset ``name``'s
    reader fixes (the flag would silently do nothing), else ''."""
    void = VOID_LABELS.get(name)
    if ignore_label is None or void is None or ignore_label == void:
        return ""
    return (f"--ignore_label {ignore_label}: the {name} dataset marks void pixels {void} itself; "
            f"drop the flag (or give --ignore_label {void})")


def dataset_classes(name: str) -> Optional[Sequence[str]]:
    """The fixed class names of a named dataset, or None where the user defines them (``folder``)."""
    return NAMED_CLASSES.get(name)


def get_dataset(name: str, root: Union[str, Path], split: Optional[str], transform: Optional[Callable] = None,
                **kwargs) -> SegmentationDataset:
    """Build a dataset by name.

    - ``voc``: ``VOCSegDataset(root, split, transform, **kwargs)``; root is ``VOCdevkit_aug/`` or ``VOC2012/``.
    - ``folder``: ``SegFolderDataset(root, split, transform, **kwargs)``; classes from ``num_classes``,
      ``classes`` or ``root/classes.txt``.
    - ``toy``: the synthetic shapes written by ``make_toy_dataset(root)`` (``scripts/make_toy_data.py``),
      read as ``VOCSegDataset(root, split, transform, classes=TOY_CLASSES)``.
    - ``cityscapes``: ``CityscapesDataset(root, split, transform)``; root holds ``leftImg8bit/``, ``gtFine/``.
    - ``ade20k``: ``ADE20KDataset(root, split, transform)``; root is ``ADEChallengeData2016/`` or its parent.
    """
    if name in DATASET_CLASSES:
        return DATASET_CLASSES[name](root, split, transform, **kwargs)
    if name == "toy":
        if not (Path(root) / "VOC2012").is_dir():
            raise DataError(f"no toy dataset at {root}: create it with "
                            f"`python scripts/make_toy_data.py --out {root}`")
        dataset = VOCSegDataset(root, split, transform, classes=kwargs.pop("classes", TOY_CLASSES), **kwargs)
        dataset.name = "toy"
        return dataset
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def palette_colours(dataset: SegmentationDataset) -> List[List[int]]:
    """The RGB colour of each class of ``dataset``, ``[[r, g, b], ...]`` (JSON-ready, for a checkpoint's meta)."""
    return dataset.palette[:dataset.num_classes].astype(int).tolist()


def checkpoint_palette(meta: dict) -> np.ndarray:
    """The (256, 3) uint8 palette to draw a checkpoint's predictions with.

    ``meta["palette"]`` (per-class colours, as :func:`palette_colours` writes them) when present; for
    older checkpoints, the colours of the dataset named in ``meta["config"]["dataset"]``; else VOC's.
    """
    return full_palette(meta.get("palette") or NAMED_COLOURS.get((meta.get("config") or {}).get("dataset")))
