"""Cityscapes fine annotations: 19 training classes, every other label id ignored (255).

Layout (the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``, unzipped into one
folder)::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The ``labelIds`` PNGs hold the 34 raw label ids; they are mapped to the 19 train ids of the official
table (``cityscapesscripts/helpers/labels.py``) when read, so no preprocessing step is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Union

import numpy as np

from .base import SegmentationDataset, list_dir_files
from .errors import DataError

# trainId order; names and colours from cityscapesscripts/helpers/labels.py
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
CITYSCAPES_COLOURS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))
# label id -> train id for the 19 evaluated classes; every other id (0-6 void, 9 parking, 10 rail track,
# 14-16 guard rail/bridge/tunnel, 18 polegroup, 29 caravan, 30 trailer, ...) is ignored.
LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                        25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_IGNORE_LABEL = 255
CITYSCAPES_SPLITS = ("train", "val", "test")
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"


def train_id_table(ignore_label: int = CITYSCAPES_IGNORE_LABEL) -> np.ndarray:
    """(256,) uint8 lookup table: ``table[label_id]`` is the train id, ``ignore_label`` for the rest."""
    table = np.full(256, ignore_label, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


class CityscapesDataset(SegmentationDataset):
    """Cityscapes ``gtFine`` (19 classes, 255 ignored); ids are ``<city>/<city>_<seq>_<frame>``.

    Parameters
    ----------
    root : the folder holding ``leftImg8bit/`` and ``gtFine/``.
    split : ``train`` (2,975 images), ``val`` (500) or ``test`` (1,525, labels all ignored).
    transform : ``transform(image, label)`` applied to every item.

    Labels are the ``*_gtFine_labelIds.png`` files mapped through :func:`train_id_table` when read.
    """

    name = "cityscapes"

    def __init__(self, root: Union[str, Path], split: str = "train", transform: Optional[Callable] = None):
        root = Path(root)
        self.root, self.split = root, split
        image_split, label_split = root / "leftImg8bit" / split, root / "gtFine" / split
        if not image_split.is_dir():
            raise DataError(f"no Cityscapes split {split!r} at {root}: expected {image_split}/<city>/"
                            f"*{IMAGE_SUFFIX} (splits: {', '.join(CITYSCAPES_SPLITS)})")
        ids: List[str] = []
        image_paths, label_paths, missing = [], [], []
        for city in sorted(p.name for p in image_split.iterdir() if p.is_dir()):
            labels = list_dir_files(label_split / city)
            for name in sorted(list_dir_files(image_split / city)):
                if not name.endswith(IMAGE_SUFFIX):
                    continue
                stem = name[:-len(IMAGE_SUFFIX)]
                label_name = stem + LABEL_SUFFIX
                if label_name not in labels:
                    missing.append(label_split / city / label_name)
                    continue
                ids.append(f"{city}/{stem}")
                image_paths.append(image_split / city / name)
                label_paths.append(label_split / city / label_name)
        if missing:
            raise DataError(f"{len(missing)} of {len(missing) + len(ids)} images of Cityscapes split {split!r} "
                            f"have no label, first: {missing[0]}")
        if not ids:
            raise DataError(f"no *{IMAGE_SUFFIX} images in {image_split}/<city>/")
        self.source = f"{len({i.split('/')[0] for i in ids})} cities, gtFine labelIds mapped to train ids"
        self.label_table = train_id_table()
        super().__init__(ids, image_paths, label_paths, classes=CITYSCAPES_CLASSES,
                         ignore_label=CITYSCAPES_IGNORE_LABEL, transform=transform,
                         class_colours=CITYSCAPES_COLOURS)
