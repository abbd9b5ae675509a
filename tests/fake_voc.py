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


# ------------------------------------------------------------------ layouts built from the real VOC sample

def sample_splits(sample_ids: List[str]) -> Dict[str, List[str]]:
    """VOC and SBD splits over the 13 real sample ids, overlapping as the real lists do: an SBD id in VOC
    train and one in VOC val (which must stay out of train_aug)."""
    ids = sorted(sample_ids)
    return {"voc_train": ids[0:4], "voc_val": ids[4:7], "sbd_train": ids[3:4] + ids[7:10],
            "sbd_val": ids[6:7] + ids[10:13]}


def sample_train_aug(splits: Dict[str, List[str]]) -> List[str]:
    held_out = set(splits["voc_val"])
    return sorted((set(splits["voc_train"]) | set(splits["sbd_train"]) | set(splits["sbd_val"])) - held_out)


def write_ids(path: Path, ids: List[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def build_devkit_from_sample(sample: Path, devkit: Path, sbd_layout: str = "", aug_labels: bool = False,
                             drop_voc_labels_of_sbd: bool = True) -> Dict[str, List[str]]:
    """A VOC devkit of the real sample images and labels, in one of the layouts users have.

    ``devkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation/{train,val}.txt}`` always;
    ``sbd_layout`` ``"benchmark_RELEASE"`` (SBD's own archive) or ``"VOCaug"`` (gluoncv's
    ``scripts/datasets/pascal_voc.py``, with its ``trainval.txt``) adds SBD's ``dataset/{img, cls/*.mat,
    train.txt, val.txt}``; ``aug_labels`` adds ``VOC2012/SegmentationClassAug/`` grey PNGs of train_aug +
    val (the widely shared "aug" labels). VOC palette PNGs are kept only for VOC train/val ids, as in the
    real VOC2012 download. Returns the splits used (``sample_splits``).
    """
    import shutil

    from PIL import Image

    sample_voc = sample / "VOC2012"
    all_ids = (sample_voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    splits = sample_splits(all_ids)
    voc2012 = devkit / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass"):
        (voc2012 / folder).mkdir(parents=True, exist_ok=True)
    voc_ids = splits["voc_train"] + splits["voc_val"]
    for sample_id in all_ids:  # VOC2012's JPEGImages holds every image SBD uses
        shutil.copyfile(sample_voc / "JPEGImages" / f"{sample_id}.jpg", voc2012 / "JPEGImages" / f"{sample_id}.jpg")
    for sample_id in voc_ids if drop_voc_labels_of_sbd else all_ids:
        shutil.copyfile(sample_voc / "SegmentationClass" / f"{sample_id}.png",
                        voc2012 / "SegmentationClass" / f"{sample_id}.png")
    lists = voc2012 / "ImageSets" / "Segmentation"
    write_ids(lists / "train.txt", splits["voc_train"])
    write_ids(lists / "val.txt", splits["voc_val"])
    write_ids(lists / "trainval.txt", voc_ids)

    def indices(sample_id: str) -> np.ndarray:
        with Image.open(sample_voc / "SegmentationClass" / f"{sample_id}.png") as png:
            return np.array(png, dtype=np.uint8)

    if sbd_layout:
        dataset = devkit / sbd_layout / "dataset"
        for folder in ("img", "cls"):
            (dataset / folder).mkdir(parents=True, exist_ok=True)
        write_ids(dataset / "train.txt", splits["sbd_train"])
        write_ids(dataset / "val.txt", splits["sbd_val"])
        if sbd_layout == "VOCaug":
            write_ids(dataset / "trainval.txt", splits["sbd_train"] + splits["sbd_val"])
        for sample_id in splits["sbd_train"] + splits["sbd_val"]:
            shutil.copyfile(sample_voc / "JPEGImages" / f"{sample_id}.jpg", dataset / "img" / f"{sample_id}.jpg")
            label = indices(sample_id)
            label[label == 255] = 0  # SBD has no void pixels
            gtcls = {"Segmentation": label, "Boundaries": np.zeros((20, 1), dtype=object),
                     "CategoriesPresent": np.unique(label[label > 0]).astype(np.uint8)}
            scipy.io.savemat(str(dataset / "cls" / f"{sample_id}.mat"), {"GTcls": gtcls})
    if aug_labels:
        aug = voc2012 / "SegmentationClassAug"
        aug.mkdir(parents=True, exist_ok=True)
        for sample_id in sample_train_aug(splits) + splits["voc_val"]:
            Image.fromarray(indices(sample_id), mode="L").save(aug / f"{sample_id}.png")
    return splits
