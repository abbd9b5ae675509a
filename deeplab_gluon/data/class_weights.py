"""Per-class loss weights from the training labels (``--class_weights auto``) or from a file.

ENet's weighting (Paszke et al., 2016): with ``p_c`` the fraction of labelled pixels of class ``c``,
``w_c = 1 / ln(1.02 + p_c)``, so rare classes weigh up to ``1 / ln(1.02)`` = 50.5 and a class covering
every pixel 1.4. Counting the pixels reads every label once (a few minutes for VOC ``train_aug``), so the
counts are cached as JSON next to the data (``<root>/class_pixel_counts.json``), one entry per split,
reused while the split's label file list (its fingerprint) is unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
from tqdm import tqdm

from .base import SegmentationDataset
from .errors import DataError, read_text

CACHE_NAME = "class_pixel_counts.json"
ENET_OFFSET = 1.02
AUTO = "auto"


def count_class_pixels(dataset: SegmentationDataset, progress: bool = False) -> np.ndarray:
    """(C,) int64: the pixels of each class over every label of ``dataset`` (``ignore_label`` excluded).

    Labels are read through ``dataset.read_label_at`` (images are not decoded), so a label value that is
    neither a class nor ``ignore_label`` raises ``DataError`` naming its file.
    """
    counts = np.zeros(256, dtype=np.int64)
    for index in tqdm(range(len(dataset)), desc="counting class pixels", unit="label", disable=not progress):
        counts += np.bincount(dataset.read_label_at(index).ravel(), minlength=256)
    return counts[:dataset.num_classes]


def label_list_fingerprint(dataset: SegmentationDataset) -> str:
    """A short hash of what the counts depend on: the label files (paths relative to the root), the
    number of classes and the ignore label. Files edited in place keep their fingerprint."""
    root = Path(dataset.root) if dataset.root is not None else None
    digest = hashlib.sha256(f"{dataset.num_classes} {dataset.ignore_label}\n".encode())
    for index in range(len(dataset)):
        path = dataset.label_path(index)
        if root is not None:
            with contextlib.suppress(ValueError):  # a list file pointing outside the root
                path = path.relative_to(root)
        digest.update(f"{path.as_posix()}\n".encode())
    return digest.hexdigest()[:16]


def cached_class_pixel_counts(dataset: SegmentationDataset, cache_path: Optional[Union[str, Path]] = None,
                              progress: bool = False) -> np.ndarray:
    """:func:`count_class_pixels`, read from or written to the JSON cache (default
    ``<dataset.root>/class_pixel_counts.json``)::

        {"train_aug": {"fingerprint": "...", "images": 10582, "classes": [...], "counts": [...]}, ...}

    An entry whose fingerprint differs from the dataset's is recomputed and replaced. A cache that
    cannot be read is ignored; one that cannot be written (a read-only data folder) is not an error.
    """
    if cache_path is None:
        if dataset.root is None:
            return count_class_pixels(dataset, progress)
        cache_path = Path(dataset.root) / CACHE_NAME
    cache_path = Path(cache_path)
    key, fingerprint = str(dataset.split) if dataset.split else "all", label_list_fingerprint(dataset)
    cache = {}
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(cache_path.read_text())
    cache = cache if isinstance(cache, dict) else {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint:
        counts = np.asarray(entry.get("counts", []), dtype=np.int64)
        if counts.shape == (dataset.num_classes,):
            return counts
    counts = count_class_pixels(dataset, progress)
    cache[key] = {"fingerprint": fingerprint, "images": len(dataset), "classes": list(dataset.classes),
                  "counts": counts.tolist()}
    _write_atomically(cache_path, json.dumps(cache, indent=1))
    return counts


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file; nothing is
    written if the folder is not writable."""
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
        # mkstemp creates 0600; the cache sits in a dataset folder others share, so it gets the umask's mode
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:  # a full disk mid-write leaves no half temporary behind
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def enet_weights(counts, offset: float = ENET_OFFSET) -> np.ndarray:
    """(C,) float64 ``1 / ln(offset + p_c)`` with ``p_c = counts[c] / sum(counts)``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if counts.ndim != 1 or total <= 0 or (counts < 0).any():
        raise ValueError(f"class pixel counts must be non-negative with a positive sum, got {counts.tolist()}")
    return 1.0 / np.log(offset + counts / total)


def read_class_weights(path: Union[str, Path], num_classes: int) -> np.ndarray:
    """(C,) float64 weights from a text file: ``num_classes`` numbers separated by spaces, commas or
    newlines (``#`` starts a comment); ``DataError`` naming the file for a wrong count or a weight
    that is negative, not finite, or when all are zero."""
    path = Path(path)
    text = read_text(path, "class weights")
    fields = [field for line in text.splitlines() for field in line.split("#")[0].replace(",", " ").split()]
    try:
        weights = np.array([float(field) for field in fields], dtype=np.float64)
    except ValueError as error:
        raise DataError(f"class weights {path}: {error}") from None
    if weights.shape != (num_classes,):
        raise DataError(f"class weights {path} holds {len(weights)} numbers for {num_classes} classes")
    if not np.isfinite(weights).all() or (weights < 0).any() or not weights.any():
        raise DataError(f"class weights {path} must be finite, non-negative and not all zero")
    return weights


def resolve_class_weights(spec: str, dataset: SegmentationDataset, progress: bool = False) -> np.ndarray:
    """``--class_weights``: ``auto`` gives :func:`enet_weights` of the cached pixel counts of ``dataset``
    (the training split); anything else is a file for :func:`read_class_weights`."""
    if spec == AUTO:
        counts = cached_class_pixel_counts(dataset, progress=progress)
        if counts.sum() == 0:
            raise DataError(f"{dataset.describe()}: no labelled pixel to compute class weights from")
        return enet_weights(counts)
    return read_class_weights(spec, dataset.num_classes)

