"""Tiny Cityscapes and ADE20K trees in their real on-disk layouts, with chosen raw label values."""
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

from deeplab_gluon.data import write_image

SHAPE = (6, 8)  # height, width

# Cityscapes raw label ids on one row, and the train ids they must become (hand-written from
# cityscapesscripts/helpers/labels.py): unlabeled 0, road 7, sidewalk 8, parking 9 (ignored),
# car 26, bicycle 33, person 24, dynamic 5 (ignored).
CITYSCAPES_ROW = [0, 7, 8, 9, 26, 33, 24, 5]
CITYSCAPES_ROW_TRAIN_IDS = [255, 0, 1, 255, 13, 18, 11, 255]
CITYSCAPES_FILES = {"train": {"aachen": ["aachen_000000_000019", "aachen_000001_000019"],
                              "bochum": ["bochum_000000_000313"]},
                    "val": {"frankfurt": ["frankfurt_000000_000294"]}}

# ADE20K annotation values and the classes they must become: 0 ("other") ignored, the rest shifted by one.
ADE20K_ROW = [0, 1, 2, 3, 13, 100, 149, 150]
ADE20K_ROW_CLASSES = [255, 0, 1, 2, 12, 99, 148, 149]
ADE20K_FILES = {"training": ["ADE_train_00000001", "ADE_train_00000002"], "validation": ["ADE_val_00000001"]}


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, SHAPE + (3,), dtype=np.uint8)


def _grey_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def label_rows(row: List[int], shift: int) -> np.ndarray:
    """A (SHAPE) label whose rows are ``row`` rolled by ``shift + r``, so files differ but hold the same values."""
    return np.stack([np.roll(row, shift + r) for r in range(SHAPE[0])])


def write_cityscapes(root: Path, files: Dict[str, Dict[str, List[str]]] = CITYSCAPES_FILES) -> None:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine/<split>/<city>/*_gtFine_{labelIds,color,
    instanceIds}.png`` (the other gtFine files are there as in the real download, and must be left alone)."""
    for split, cities in files.items():
        for city, stems in cities.items():
            for number, stem in enumerate(stems):
                image_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                image_path.parent.mkdir(parents=True, exist_ok=True)
                write_image(image_path, _image(number))
                labels = root / "gtFine" / split / city
                _grey_png(labels / f"{stem}_gtFine_labelIds.png", label_rows(CITYSCAPES_ROW, number))
                _grey_png(labels / f"{stem}_gtFine_instanceIds.png", np.full(SHAPE, 26))
                write_image(labels / f"{stem}_gtFine_color.png", np.zeros(SHAPE + (3,), dtype=np.uint8))


def write_ade20k(parent: Path, files: Dict[str, List[str]] = ADE20K_FILES) -> Path:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}/`` under ``parent``; returns the
    ``ADEChallengeData2016`` folder."""
    root = parent / "ADEChallengeData2016"
    for folder, stems in files.items():
        for number, stem in enumerate(stems):
            image_path = root / "images" / folder / f"{stem}.jpg"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            write_image(image_path, _image(number))
            _grey_png(root / "annotations" / folder / f"{stem}.png", label_rows(ADE20K_ROW, number))
    return root
