"""PASCAL VOC 2012 segmentation, with the SBD augmentation (``train_aug``, 10,582 images)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io

from .base import SegmentationDataset, list_dir_files
from .errors import DataError
from .list_files import has_pairs, is_list_file_split, read_id_list, read_listed_pairs
from .palette import VOC_CLASSES

VOC_SPLITS = ("train", "val", "trainval", "train_aug")
PREPARE_HINT = "see docs/data.md (scripts/prepare_voc.py)"


def resolve_voc_root(root: Union[str, Path]) -> Tuple[Path, Path]:
    """``(devkit, voc2012)`` folders from either ``VOCdevkit_aug/`` (holding ``VOC2012/``) or ``VOC2012/``.

    SBD, when present, lives in ``devkit`` (see :func:`find_sbd`).
    """
    root = Path(root)
    if (root / "VOC2012").is_dir():
        return root, root / "VOC2012"
    if (root / "JPEGImages").is_dir() or (root / "ImageSets").is_dir():
        return root.parent, root
    raise DataError(f"no VOC2012 dataset at {root}: expected {root / 'VOC2012'} or a VOC2012 folder "
                    f"itself with JPEGImages/ and ImageSets/; {PREPARE_HINT}")


# Where SBD (images img/, labels cls/, split lists) is found inside the devkit, in order: as extracted from
# benchmark.tgz (where scripts/prepare_voc.py installs it), or renamed to VOCaug/ by gluoncv's
# scripts/datasets/pascal_voc.py (which the gluon DeepLabV3 recipe uses).
SBD_LAYOUTS = (("benchmark_RELEASE/dataset", "SBD"), ("VOCaug/dataset", "SBD in gluoncv's VOCaug layout"))


def find_sbd(devkit: Path) -> Optional[Tuple[Path, str]]:
    """``(folder, description)`` of the first SBD layout present in ``devkit``, or None."""
    return next(((devkit / relative, description) for relative, description in SBD_LAYOUTS
                 if (devkit / relative).is_dir()), None)


def compute_train_aug_ids(voc_train: Iterable[str], voc_val: Iterable[str], sbd_train: Iterable[str],
                          sbd_val: Iterable[str]) -> List[str]:
    """``train_aug`` = VOC 2012 train + SBD train + SBD val, minus VOC 2012 val; sorted, no duplicates.

    With the official lists this is 10,582 ids (1,464 + 8,498 + 2,857 with overlaps removed).
    """
    held_out = set(voc_val)
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - held_out)


def _shown_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (shorter in a log line), else as it is."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def read_sbd_label(path: Path) -> np.ndarray:
    """SBD ``cls/<id>.mat`` -> (H, W) uint8 class indices (``GTcls.Segmentation``; SBD has no void)."""
    try:
        mat = scipy.io.loadmat(str(path))
        segmentation = mat["GTcls"]["Segmentation"][0][0]  # a 1x1 MATLAB struct array
    except (OSError, KeyError, IndexError, ValueError, TypeError) as error:
        raise DataError(f"cannot read SBD label {path}: {error}") from None
    return np.asarray(segmentation, dtype=np.uint8)


def read_split(devkit: Path, voc2012: Path, split: str, root: Optional[Path] = None) -> Tuple[List[str], Path, str]:
    """``(lines, list_file, how)`` of a split: its lines (ids or ``image label`` pairs), the list file
    read or expected (for messages), and a few words on where the list came from.

    ``split`` is ``ImageSets/Segmentation/<split>.txt``, or, ending in ``.txt``, a list file relative to
    ``root`` (the folder the user gave, default ``devkit``) or absolute. Without a ``train_aug.txt``,
    ``train_aug`` is computed from the VOC lists and SBD's (in either layout of ``SBD_LAYOUTS``), else
    from the labels in ``SegmentationClassAug/`` minus VOC ``val``.
    """
    if is_list_file_split(split):
        list_file = (devkit if root is None else root) / split  # relative to the root, or absolute
        return read_id_list(list_file), list_file, f"list {list_file}"
    lists = voc2012 / "ImageSets" / "Segmentation"
    list_file = lists / f"{split}.txt"
    if list_file.is_file():
        return read_id_list(list_file), list_file, f"list {_shown_path(list_file, devkit)}"
    if split != "train_aug":
        raise DataError(f"split list not found: {list_file} (VOC splits: {', '.join(VOC_SPLITS)}, or a .txt list "
                        f"file relative to {devkit if root is None else root})")
    sbd = find_sbd(devkit)
    aug_labels = voc2012 / "SegmentationClassAug"
    if sbd is not None:
        needed = [lists / "train.txt", lists / "val.txt", sbd[0] / "train.txt", sbd[0] / "val.txt"]
        how = f"computed from VOC2012 train/val and {_shown_path(sbd[0], devkit)} ({sbd[1]}) train/val"
    elif aug_labels.is_dir():
        needed = [lists / "val.txt"]
        how = "computed as the labels in VOC2012/SegmentationClassAug minus VOC2012 val"
    else:
        raise DataError(f"split list not found: {list_file}, and it cannot be computed: {devkit} has no SBD "
                        f"({' or '.join(folder for folder, _ in SBD_LAYOUTS)}) and no "
                        f"VOC2012/SegmentationClassAug; {PREPARE_HINT}")
    if missing := [p for p in needed if not p.is_file()]:
        raise DataError(f"split list not found: {list_file}, and it cannot be computed without "
                        f"{missing[0]}; {PREPARE_HINT}")
    if sbd is not None:
        return compute_train_aug_ids(*(read_id_list(p) for p in needed)), list_file, how
    labelled = sorted(name[:-4] for name in list_dir_files(aug_labels) if name.endswith(".png"))
    return compute_train_aug_ids(labelled, read_id_list(needed[0]), [], []), list_file, how


class VOCSegDataset(SegmentationDataset):
    """PASCAL VOC 2012 segmentation (21 classes, 255 = void), optionally with SBD labels.

    Parameters
    ----------
    root : ``VOCdevkit_aug/`` (holding ``VOC2012/`` and optionally SBD as ``benchmark_RELEASE/`` or
        gluoncv's ``VOCaug/``) or ``VOC2012/`` itself.
    split : ``train``, ``val``, ``trainval``, ``train_aug`` (or any ``ImageSets/Segmentation/<split>.txt``),
        or a ``.txt`` list file relative to ``root`` or absolute (see :func:`read_split`).
    transform : ``transform(image, label)`` applied to every item, e.g. ``TrainTransform``.
    classes : class names; their count is ``num_classes`` (the toy dataset passes ``TOY_CLASSES``).

    A list of ids: the label file of each id is found, in this order, as the VOC palette PNG
    ``SegmentationClass/<id>.png`` (read as palette indices), the grey PNG
    ``SegmentationClassAug/<id>.png``, or SBD's ``cls/<id>.mat``; the image as ``JPEGImages/<id>.jpg``
    or SBD's ``img/<id>.jpg``. A list of ``image label`` pairs (DrSleep's ``/JPEGImages/<id>.jpg
    /SegmentationClassAug/<id>.png``): paths relative to ``VOC2012/``, else to ``root``, a leading ``/``
    included (see ``list_files.resolve_listed_path``). All files are checked when the dataset is built;
    ``source`` (and ``describe()``) says where the list and the labels came from.
    """

    name = "voc"

    def __init__(self, root: Union[str, Path], split: str = "train", transform: Optional[Callable] = None,
                 classes: Sequence[str] = VOC_CLASSES):
        devkit, voc2012 = resolve_voc_root(root)
        self.root, self.split = Path(root), split
        lines, list_file, list_source = read_split(devkit, voc2012, split, root=Path(root))
        if not lines:
            raise DataError(f"split list {list_file} is empty")
        if has_pairs(lines):
            ids, image_paths, label_paths = read_listed_pairs(lines, list_file, [voc2012, devkit])
        else:
            ids = lines
            sbd = find_sbd(devkit)
            sbd_dir = sbd[0] if sbd is not None else devkit / SBD_LAYOUTS[0][0]
            image_dirs = [(voc2012 / "JPEGImages", ".jpg"), (sbd_dir / "img", ".jpg")]
            label_dirs = [(voc2012 / "SegmentationClass", ".png"), (voc2012 / "SegmentationClassAug", ".png"),
                          (sbd_dir / "cls", ".mat")]
            image_paths = self._locate(ids, image_dirs, "image", split)
            label_paths = self._locate(ids, label_dirs, "label", split)
        # "1464 VOC2012/SegmentationClass, 9118 VOCaug/dataset/cls": how many labels come from each folder
        counts = Counter(path.parent for path in label_paths)
        self.source = f"{list_source}; labels: " + ", ".join(f"{count} {_shown_path(folder, devkit)}"
                                                             for folder, count in counts.items())
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
        return read_sbd_label(path) if path.suffix == ".mat" else super().load_label(path)
