"""A custom dataset from two folders: ``root/images/*`` and ``root/labels/*.png`` paired by file stem."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .base import SegmentationDataset
from .class_list import CLASS_LIST_NAME, read_class_list
from .errors import DataError
from .list_files import has_pairs, is_list_file_split, read_id_list, read_listed_pairs
from .palette import voc_palette
from .splits import ALL_IMAGES, NO_SPLIT, is_all_images

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG would corrupt class indices


def files_by_stem(folder: Path, suffixes: Sequence[str], role: str = "") -> Dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``suffixes``; two files sharing a stem
    would make the pairing ambiguous, so that is an error. ``role`` (``ground-truth``) names the folder."""
    role = f"{role} " if role else ""
    if not folder.is_dir():
        raise DataError(f"{role}folder not found: {folder}")
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f"two {role}files with the stem {path.stem!r}: {files[path.stem]} and {path}")
        files[path.stem] = path
    return files


class SegFolderDataset(SegmentationDataset):
    """Images and grey label PNGs of class indices (CamVid-style), e.g.::

        root/images/0001.jpg   root/labels/0001.png
        root/images/0002.jpg   root/labels/0002.png
        root/train.txt         (optional, one id per line, selected by split="train";
                                split="all" takes every image)
        root/classes.txt       (optional: class names and colours, one class per line)

    Parameters
    ----------
    root : the folder holding ``images/`` and ``labels/``.
    split : read ids from ``root/<split>.txt``; a split ending in ``.txt`` is a list file itself (relative
        to ``root``, or absolute); ``"all"`` (or None, ``""``) takes every image in ``root/images`` and
        reads no list file.
    transform : ``transform(image, label)`` applied to every item.
    num_classes : number of classes; None (or 0) takes the count of ``classes`` or of ``root/classes.txt``.
    ignore_label : the label value of void pixels (excluded from loss and metrics).
    class_file : a class list file used instead of ``root/classes.txt`` (e.g. for a data folder one cannot write to).
    list_file : a list file (absolute, or relative to ``root``) overriding ``split``; each line is an id
        (``images/<id>.*`` + ``labels/<id>.png``) or ``image_path label_path`` relative to ``root``, also
        with a leading ``/`` (DrSleep-style lists; see ``list_files.resolve_listed_path``).
    classes : class names; default: those of ``root/classes.txt`` (one per line, ``name`` or
        ``name r g b``, see ``class_list``), else ``["class0", "class1", ...]``.

    ``palette`` colours class i with the colour ``classes.txt`` gives it, else with VOC's colour of i.
    """

    name = "folder"

    def __init__(self, root: Union[str, Path], split: Optional[str] = None, transform: Optional[Callable] = None,
                 num_classes: Optional[int] = None, ignore_label: int = 255,
                 list_file: Optional[Union[str, Path]] = None, classes: Optional[Sequence[str]] = None,
                 class_file: Optional[Union[str, Path]] = None):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"dataset folder not found: {root}")
        class_file = Path(class_file) if class_file else root / CLASS_LIST_NAME
        if not class_file.is_file() and class_file != root / CLASS_LIST_NAME:
            raise DataError(f"class list not found: {class_file}")
        classes, colours = self._class_names(class_file, num_classes, classes)
        self.root, self.split = root, split

        list_file = self._list_file(root, split, list_file)
        ids, image_paths, label_paths = (self._read_list(root, list_file) if list_file is not None
                                         else self._pair_folders(root))
        self.source = f"list {list_file}" if list_file is not None else f"every image in {root / 'images'}"
        if class_file.is_file() and colours is not None:
            self.source += f"; classes from {class_file}"
        if not ids:
            raise DataError(f"no samples in {list_file if list_file is not None else root / 'images'}")
        super().__init__(ids, image_paths, label_paths, classes=classes, ignore_label=ignore_label,
                         transform=transform, class_colours=colours)

    @staticmethod
    def _class_names(class_file: Path, num_classes: Optional[int], classes: Optional[Sequence[str]]):
        """``(names, colours)``: names from ``classes``, else ``class_file`` (``root/classes.txt``), else
        ``class0..``; colours (C, 3) from the class file when it lists as many classes, else None (VOC colours)."""
        listed = read_class_list(class_file) if class_file.is_file() else None
        num_classes = num_classes or None  # train.py's "--num_classes 0": the dataset's own count
        if classes is None and listed is not None:
            classes = listed[0]
            if num_classes is not None and num_classes != len(classes):
                raise DataError(f"num_classes is {num_classes} but {class_file} lists {len(classes)} classes")
        if classes is None:
            if num_classes is None:
                raise DataError(f"{class_file.parent}: the number of classes is unknown: give num_classes or classes, or "
                                f"write {class_file} (one class name per line)")
            classes = [f"class{i}" for i in range(num_classes)]
        elif num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes} but {len(classes)} class names were given")
        if listed is None or len(listed[0]) != len(classes):
            return list(classes), None
        default = voc_palette()
        return list(classes), [colour if colour is not None else tuple(default[index])
                               for index, colour in enumerate(listed[1])]

    @staticmethod
    def _list_file(root: Path, split: Optional[str], list_file: Optional[Union[str, Path]]) -> Optional[Path]:
        """The list file to read, or None for every image in ``images/``."""
        if list_file is None and not is_all_images(split):
            if split.strip().lower() == NO_SPLIT:
                raise DataError(f"split {split!r} means no dataset (e.g. no validation): nothing to load from {root}")
            list_file = split if is_list_file_split(split) else f"{split}.txt"
            if not is_list_file_split(split) and not (root / list_file).is_file():
                raise DataError(f"split list not found: {root / list_file} (write it, one id per line, or use "
                                f"the split '{ALL_IMAGES}' for every image in {root / 'images'})")
        # joined once: a relative root must not be joined twice; an absolute list_file replaces root
        return None if list_file is None else root / list_file

    @staticmethod
    def _pair_folders(root: Path, wanted: Optional[List[str]] = None):
        images = files_by_stem(root / "images", IMAGE_SUFFIXES)
        labels = files_by_stem(root / "labels", LABEL_SUFFIXES)
        ids = list(images) if wanted is None else wanted
        for sample_id in ids:
            if sample_id not in images:
                raise DataError(f"image not found: {root / 'images' / sample_id}.* (any of {IMAGE_SUFFIXES})")
            if sample_id not in labels:
                raise DataError(f"label not found for {images[sample_id]}: expected {root / 'labels' / sample_id}.png")
        return ids, [images[i] for i in ids], [labels[i] for i in ids]

    def _read_list(self, root: Path, list_file: Path):
        lines = read_id_list(list_file)
        return read_listed_pairs(lines, list_file, [root]) if has_pairs(lines) else self._pair_folders(root, lines)
