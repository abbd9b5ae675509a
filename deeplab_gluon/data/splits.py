"""Split names that stand for no list file: every image of a folder dataset, or no split at all.

``all`` (folder datasets): every image in ``images/`` that has a label, whatever list files exist.
``none`` (or an empty name): no split; ``train.py --val_split none`` trains without validation.
"""
from __future__ import annotations

from typing import Optional

ALL_IMAGES = "all"
NO_SPLIT = "none"


def wants_split(split: Optional[str]) -> bool:
    """False for ``None``, ``""`` and ``"none"`` (any case): the caller builds no dataset for it."""
    return split is not None and split.strip().lower() not in ("", NO_SPLIT)


def is_all_images(split: Optional[str]) -> bool:
    """True for ``None``, ``""`` and ``"all"``: a folder dataset takes every image, reading no list file."""
    return split is None or split.strip().lower() in ("", ALL_IMAGES)
