"""A dataset's class names and optional colours from a small text file (``classes.txt``).

One class per line, in label-value order (line 1 is label 0)::

    road
    sidewalk 244 35 232
    traffic sign 220 220 0

A line is a name, optionally followed by an RGB colour of three integers 0-255; names may contain
spaces. Blank lines and lines starting with ``#`` are skipped. A class without a colour is drawn in
the VOC palette's colour of its index.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

from .errors import DataError, read_text

CLASS_LIST_NAME = "classes.txt"
Colour = Tuple[int, int, int]


def _parse_colour(fields: List[str]) -> Optional[Colour]:
    """The trailing ``r g b`` of a line's fields, or None when the last three are not all 0-255 ints."""
    if len(fields) < 4:
        return None
    try:
        colour = tuple(int(value) for value in fields[-3:])
    except ValueError:
        return None
    return colour if all(0 <= value <= 255 for value in colour) else None


def read_class_list(path: Union[str, Path]) -> Tuple[List[str], List[Optional[Colour]]]:
    """``(names, colours)`` from a class list file; ``colours[i]`` is None where line i gives none.

    ``DataError`` naming the file for a missing or unreadable file, an empty list, a duplicate name,
    or more than 256 classes (labels are uint8).
    """
    path = Path(path)
    text = read_text(path, "class list")
    names: List[str] = []
    colours: List[Optional[Colour]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        colour = _parse_colour(fields)
        name = " ".join(fields[:-3] if colour is not None else fields)
        if name in names:
            raise DataError(f"{path}:{number}: class {name!r} is listed twice")
        names.append(name)
        colours.append(colour)
    if not names:
        raise DataError(f"class list {path} names no class")
    if len(names) > 256:
        raise DataError(f"class list {path} names {len(names)} classes; labels hold at most 256")
    return names, colours
