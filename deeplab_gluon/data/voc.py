"""PASCAL VOC 2012 segmentation, with the SBD augmentation (``train_aug``, 10,582 images)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io

from .base import SegmentationDataset, list_dir_files
from .errors import DataError
from .list_files import read_id_list
from .palette import VOC_CLASSES

VOC_SPLITS = ("train", "val", "trainval", "train_aug")
PREPARE_HINT = "see docs/data.md (scripts/prepare_voc.py)"


def resolve_voc_root(root: Union[str, Path]) -> Tuple[Path, Path]:
    """``(devkit, voc2012)`` folders from either ``VOCdevkit_aug/`` (holding ``VOC2012/``) or ``VOC2012/``.

    SBD, when present, lives at ``devkit / "benchmark_RELEASE"``.
    """
    root = Path(root)
    if (root / "VOC2012").is_dir():
        return root, root / "VOC2012"
    if (root / "JPEGImages").is_dir() or (root / "ImageSets").is_dir():
        return root.parent, root
    raise DataError(f"no VOC2012 dataset at {root}: expected {root / 'VOC2012'} or a VOC2012 folder "
                    f"itself with JPEGImages/ and ImageSets/; {PREPARE_HINT}")


def sbd_dataset_dir(devkit: Path) -> Path:
    """Where the SBD ``benchmark.tgz`` puts images (``img/``), labels (``cls/``) and its split lists."""
    return devkit / "benchmark_RELEASE" / "dataset"


def compute_train_aug_ids(voc_train: Iterable[str], voc_val: Iterable[str], sbd_train: Iterable[str],
                          sbd_val: Iterable[str]) -> List[str]:
    """``train_aug`` = VOC 2012 train + SBD train + SBD val, minus VOC 2012 val; sorted, no duplicates.

    With the official lists this is 10,582 ids (1,464 + 8,498 + 2,857 with overlaps removed).
    """
    held_out = set(voc_val)
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - held_out)


def read_sbd_label(path: Path) -> np.ndarray:
    """SBD ``cls/<id>.mat`` -> (H, W) uint8 class indices (``GTcls.Segmentation``; SBD has no void)."""
    try:
        mat = scipy.io.loadmat(str(path))
        segmentation = mat["GTcls"]["Segmentation"][0][0]  # a 1x1 MATLAB struct array
    except (OSError, KeyError, IndexError, ValueError, TypeError) as error:
        raise DataError(f"cannot read SBD label {path}: {error}") from None
    return np.asarray(segmentation, dtype=np.uint8)


def read_split_ids(devkit: Path, voc2012: Path, split: str) -> List[str]:
    """Ids of a split from ``ImageSets/Segmentation/<split>.txt``; ``train_aug`` is computed from the
    VOC and SBD lists when its file has not been written (``scripts/prepare_voc.py`` writes it)."""
    lists = voc2012 / "ImageSets" / "Segmentation"
    list_file = lists / f"{split}.txt"
    if list_file.is_file():
        return read_id_list(list_file)
    if split == "train_aug":
        sbd = sbd_dataset_dir(devkit)
        needed = [lists / "train.txt", lists / "val.txt", sbd / "train.txt", sbd / "val.txt"]
        missing = [p for p in needed if not p.is_file()]
        if missing:
            raise DataError(f"split list not found: {list_file}, and it cannot be computed without "
                            f"{missing[0]}; {PREPARE_HINT}")
        return compute_train_aug_ids(*(read_id_list(p) for p in needed))
    known = ", ".join(VOC_SPLITS)
    raise DataError(f"split list not found: {list_file} (VOC splits: {known})")


class VOCSegDataset(SegmentationDataset):
    """PASCAL VOC 2012 segmentation (21 classes, 255 = void), optionally with SBD labels.

    Parameters
    ----------
    root : ``VOCdevkit_aug/`` (holding ``VOC2012/`` and optionally ``benchmark_RELEASE/``) or ``VOC2012/``.
    split : ``train``, ``val``, ``trainval``, ``train_aug`` (or any ``ImageSets/Segmentation/<split>.txt``).
    transform : ``transform(image, label)`` applied to every item, e.g. ``TrainTransform``.
    classes : class names; their count is ``num_classes`` (the toy dataset passes ``TOY_CLASSES``).

    The label file of each id is found, in this order, as the VOC palette PNG
    ``SegmentationClass/<id>.png`` (read as palette indices), the grey PNG
    ``SegmentationClassAug/<id>.png``, or SBD's ``benchmark_RELEASE/dataset/cls/<id>.mat``; the image as
    ``JPEGImages/<id>.jpg`` or SBD's ``img/<id>.jpg``. All files are checked when the dataset is built.
    """

    def __init__(self, root: Union[str, Path], split: str = "train", transform: Optional[Callable] = None,
                 classes: Sequence[str] = VOC_CLASSES):
        devkit, voc2012 = resolve_voc_root(root)
        self.root, self.split = Path(root), split
        ids = read_split_ids(devkit, voc2012, split)
        if not ids:
            raise DataError(f"split list {voc2012 / 'ImageSets' / 'Segmentation' / f'{split}.txt'} is empty")
        sbd = sbd_dataset_dir(devkit)
        image_dirs = [(voc2012 / "JPEGImages", ".jpg"), (sbd / "img", ".jpg")]
        label_dirs = [(voc2012 / "SegmentationClass", ".png"), (voc2012 / "SegmentationClassAug", ".png"),
                      (sbd / "cls", ".mat")]
        image_paths = self._locate(ids, image_dirs, "image", split)
        label_paths = self._locate(ids, label_dirs, "label", split)
        super().__init__(ids, image_paths, label_paths, classes=classes, ignore_label=255, transform=transform)

    @staticmethod
    def _locate(ids: Sequence[str], candidates: Sequence[Tuple[Path, str]], what: str, split: str) -> List[Path]:
        """The first existing ``folder/<id><suffix>`` for every id; DataError naming the first missing one."""
        listings = [(folder, suffix, list_dir_files(folder)) for folder, suffix in candidates]
        paths, missing = [], []
        for sample_id in ids:
            for folder, suffix, names in listings:
                if sample_id + suffix in names:
                    paths.append(folder / (sample_id + suffix))
                    break
            else:
                missing.append(sample_id)
        if missing:
            first = candidates[0][0] / (missing[0] + candidates[0][1])
            elsewhere = ", ".join(str(folder) for folder, _ in candidates[1:])
            raise DataError(f"{len(missing)} of {len(ids)} ids of split {split!r} have no {what} file, "
                            f"first: {first} (also looked in {elsewhere})")
        return paths

    def load_label(self, path: Path) -> np.ndarray:
        if path.suffix == ".mat":
            return read_sbd_label(path)
        return super().load_label(path)
