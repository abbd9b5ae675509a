"""Build ``VOCdevkit_aug/`` from the VOC 2012 and SBD downloads, and write the ``train_aug`` list.

Result::

    VOCdevkit_aug/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val,train_aug}.txt,...}
    VOCdevkit_aug/benchmark_RELEASE/dataset/{img,cls,train.txt,val.txt}

which ``VOCSegDataset("VOCdevkit_aug", split)`` reads for ``train``, ``val``, ``trainval`` and ``train_aug``.
Works from the archives or from already extracted folders; downloading is optional.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Union

from tqdm import tqdm

from .list_files import read_id_list
from .errors import DataError
from .voc import SBD_LAYOUTS, VOCSegDataset, compute_train_aug_ids, read_split

PathLike = Union[str, Path]

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
VOC_ARCHIVE, SBD_ARCHIVE = "VOCtrainval_11-May-2012.tar", "benchmark.tgz"
# What the official archives give, printed next to the counts found as a sanity check.
EXPECTED_COUNTS = {"voc_train": 1464, "voc_val": 1449, "sbd_train": 8498, "sbd_val": 2857, "train_aug": 10582}


def download(url: str, destination: PathLike, progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination`` (skipped when it exists) through a ``.part`` file, with a
    progress bar. Only called on request (``--download``); nothing else here uses the network."""
    destination = Path(destination)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        raise DataError(f"download of {url} to {destination} failed: {error}") from None
    partial.replace(destination)
    return destination


def extract_folder(archive: PathLike, folder_name: str, destination: PathLike, progress: bool = True) -> int:
    """Extract the files under the first ``<folder_name>/`` directory found in the archive's member paths
    (e.g. ``VOCdevkit/VOC2012/...``) into ``destination/`` and return how many files were written.

    Reads the archive as a stream (one pass over a 2 GB tar); links and members that would land outside
    ``destination`` are skipped.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise DataError(f"archive not found: {archive}")
    written = 0
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tqdm(tar, desc=f"extracting {archive.name}", unit="file", disable=not progress):
                parts = PurePosixPath(member.name).parts
                if folder_name not in parts or not member.isfile():
                    continue
                inner = parts[parts.index(folder_name) + 1:]
                if not inner or any(part in ("..", "") or part.startswith("/") for part in inner):
                    continue
                target = destination.joinpath(*inner)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                written += 1
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"cannot read archive {archive}: {error}") from None
    if not written:
        raise DataError(f"archive {archive} holds no {folder_name}/ folder")
    return written


def copy_folder(source: Path, destination: Path) -> None:
    """Copy a tree, hard-linking files when source and destination share a file system (no extra space)."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy, dirs_exist_ok=True)


def _find_folder(source: Path, name: str, marker: str) -> Path:
    """The ``name`` folder (holding ``marker``) given as itself, its parent or its grandparent."""
    for candidate in (source, source / name, source / "VOCdevkit" / name):
        if (candidate / marker).exists():
            return candidate
    raise DataError(f"no {name} folder (with {marker}) at {source}")


def _install(source: Optional[PathLike], name: str, marker: str, destination: Path, progress: bool) -> bool:
    """Put ``name`` at ``destination`` from an archive or a folder; False when there is no source and
    nothing there yet."""
    if source is None:
        return (destination / marker).exists()
    source = Path(source)
    if source.is_file():
        extract_folder(source, name, destination, progress)
    elif source.is_dir():
        folder = _find_folder(source, name, marker)
        if folder.resolve() != destination.resolve():
            copy_folder(folder, destination)
    else:
        raise DataError(f"{name} source not found: {source}")
    if not (destination / marker).exists():
        raise DataError(f"{source} did not provide {destination / marker}")
    return True


def prepare_voc(out_dir: PathLike, voc: Optional[PathLike] = None, sbd: Optional[PathLike] = None,
                progress: bool = True) -> Dict[str, int]:
    """Assemble ``out_dir`` (``VOCdevkit_aug/``) and write ``VOC2012/ImageSets/Segmentation/train_aug.txt``.

    ``voc``: ``VOCtrainval_11-May-2012.tar`` or an extracted ``VOCdevkit/``/``VOC2012/`` folder;
    ``sbd``: ``benchmark.tgz`` or an extracted ``benchmark_RELEASE/`` folder. Either may be None when
    ``out_dir`` already holds it; without SBD only the VOC splits are available. Every split is then
    checked by building a ``VOCSegDataset``. Returns the counts: ``voc_train``, ``voc_val`` and, with
    SBD, ``sbd_train``, ``sbd_val``, ``train_aug``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    voc2012 = out_dir / "VOC2012"
    if not _install(voc, "VOC2012", "ImageSets/Segmentation/train.txt", voc2012, progress):
        raise DataError(f"no VOC 2012 at {voc2012}: give the {VOC_ARCHIVE} archive or its extracted folder")
    has_sbd = _install(sbd, "benchmark_RELEASE", "dataset/train.txt", out_dir / "benchmark_RELEASE", progress)

    counts = {f"voc_{split}": len(read_split(out_dir, voc2012, split)[0]) for split in ("train", "val")}
    splits = ["train", "val"]
    if has_sbd:
        lists = voc2012 / "ImageSets" / "Segmentation"
        sbd = out_dir / SBD_LAYOUTS[0][0]  # benchmark_RELEASE/dataset, where _install put it
        sbd_train, sbd_val = read_id_list(sbd / "train.txt"), read_id_list(sbd / "val.txt")
        train_aug = compute_train_aug_ids(read_id_list(lists / "train.txt"), read_id_list(lists / "val.txt"),
                                          sbd_train, sbd_val)
        list_file = lists / "train_aug.txt"
        list_file.unlink(missing_ok=True)  # it may be a hard link into the user's extracted copy
        list_file.write_text("".join(f"{i}\n" for i in train_aug))
        counts.update(sbd_train=len(sbd_train), sbd_val=len(sbd_val), train_aug=len(train_aug))
        splits.append("train_aug")
    for split in splits:  # every listed image and label must be there
        VOCSegDataset(out_dir, split)
    return counts
