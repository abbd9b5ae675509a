"""Tiny VOC 2012 and SBD trees for tests, in the real on-disk layouts (JPEGs, palette PNGs, SBD .mat)."""
from pathlib import Path
from typing import Dict, List

import numpy as np
import scipy.io

from deeplab_gluon.data import save_index_png, write_image

IMAGE_SHAPE = (20, 30)  # height, width

# VOC train/val and SBD train/val overlap the way the real lists do: an id in SBD and VOC train,
# and an SBD id that is in VOC val (so it must stay out of train_aug).
VOC_SPLITS = {"train": ["2008_000001", "2008_000002", "2008_000003"], "val": ["2008_000004", "2008_000005"]}
SBD_SPLITS = {"train": ["2008_000002", "2009_000010", "2009_000011"], "val": ["2008_000004", "2009_000012"]}
TRAIN_AUG = ["2008_000001", "2008_000002", "2008_000003", "2009_000010", "2009_000011", "2009_000012"]


def fake_label(sample_id: str, source: str) -> np.ndarray:
    """A label that tells which id and which source (VOC png or SBD mat) it came from: a rectangle of
    class ``1 + last two digits % 20``, void border for VOC (SBD has no void), class 0 elsewhere."""
    label = np.zeros(IMAGE_SHAPE, dtype=np.uint8)
    label[5:15, 8:20] = 1 + int(sample_id[-2:]) % 20
    if source == "voc":
        label[4, 7:21] = 255
    else:
        label[5:15, 20:24] = 7  # a second class only in the SBD version
    return label


def fake_image(sample_id: str) -> np.ndarray:
    rng = np.random.default_rng(int(sample_id.replace("_", "")))
    return rng.integers(0, 256, size=IMAGE_SHAPE + (3,), dtype=np.uint8)


def write_voc(voc2012: Path, splits: Dict[str, List[str]] = VOC_SPLITS) -> None:
    """JPEGImages, palette-PNG SegmentationClass and ImageSets/Segmentation lists under ``voc2012``."""
    lists = voc2012 / "ImageSets" / "Segmentation"
    for folder in (voc2012 / "JPEGImages", voc2012 / "SegmentationClass", lists):
        folder.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for sample_id in ids:
            write_image(voc2012 / "JPEGImages" / f"{sample_id}.jpg", fake_image(sample_id))
            save_index_png(voc2012 / "SegmentationClass" / f"{sample_id}.png", fake_label(sample_id, "voc"))
    trainval = [i for split in ("train", "val") for i in splits.get(split, [])]
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in trainval))


def write_sbd(dataset: Path, splits: Dict[str, List[str]] = SBD_SPLITS) -> None:
    """SBD's ``benchmark_RELEASE/dataset``: img/*.jpg, cls/*.mat (GTcls struct) and train/val lists."""
    for folder in (dataset / "img", dataset / "cls"):
        folder.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (dataset / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for sample_id in ids:
            write_image(dataset / "img" / f"{sample_id}.jpg", fake_image(sample_id))
            label = fake_label(sample_id, "sbd")
            gtcls = {"Segmentation": label, "Boundaries": np.zeros((20, 1), dtype=object),
                     "CategoriesPresent": np.unique(label[label > 0]).astype(np.uint8)}
            scipy.io.savemat(str(dataset / "cls" / f"{sample_id}.mat"), {"GTcls": gtcls})
