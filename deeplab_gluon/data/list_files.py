"""Split list files: one id per line, or ``image_path label_path`` pairs, and where listed paths point.

A listed path is relative to the dataset's root. A leading ``/`` does not make it absolute when the file
exists under the root: the DeepLab-ResNet (DrSleep) lists most VOC users have write
``/JPEGImages/2007_000129.jpg /SegmentationClassAug/2007_000129.png`` relative to their data folder.
A path with a leading ``/`` that is not under the root but exists on its own is taken as absolute.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from .errors import DataError, read_text

LIST_SUFFIX = ".txt"


def read_id_list(path: Path) -> List[str]:
    """Non-empty, non-comment lines of a split list file, stripped."""
    if not path.is_file():
        raise DataError(f"split list not found: {path}")
    lines = read_text(path, "split list").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def is_list_file_split(split: str) -> bool:
    """A split given as a list file (``lists/train.txt``) rather than a split name (``train``)."""
    return split.endswith(LIST_SUFFIX)


def has_pairs(lines: Sequence[str]) -> bool:
    """True when some line holds more than an id (``image_path label_path``)."""
    return any(len(line.split()) > 1 for line in lines)


def resolve_listed_path(roots: Sequence[Path], text: str) -> Path:
    """Where a path written in a list file points.

    ``roots`` are the folders listed paths are relative to, in order of preference (the first is the
    dataset root). ``text`` is looked up under each root, a leading ``/`` stripped; the first existing
    file wins. Failing that, a ``text`` with a leading ``/`` that exists as it is stays absolute.
    Otherwise the path under the first root is returned, so that the error names the expected place.
    """
    relative = text.lstrip("/")
    candidates = [root / relative for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return Path(text) if text.startswith("/") and Path(text).is_file() else candidates[0]


def read_listed_pairs(lines: Sequence[str], list_file: Path,
                      roots: Sequence[Path]) -> Tuple[List[str], List[Path], List[Path]]:
    """``(ids, image_paths, label_paths)`` of ``image_path label_path`` lines, every file checked.

    The id of a pair is its image's file stem. ``DataError`` names the line of a malformed entry
    or a missing file.
    """
    ids, image_paths, label_paths = [], [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{list_file}:{number}: expected 'image_path label_path' or one id, got {line!r}")
        pair = [resolve_listed_path(roots, field) for field in fields]
        for path, field in zip(pair, fields):
            if not path.is_file():
                where = " or ".join(str(root) for root in roots)
                raise DataError(f"file not found: {path} (listed in {list_file}:{number} as {field!r}, "
                                f"relative to {where})")
        ids.append(pair[0].stem)
        image_paths.append(pair[0])
        label_paths.append(pair[1])
    return ids, image_paths, label_paths
