"""Crash-safe checkpoints.

A checkpoint is one zip file holding ``net.params`` (``save_parameters``), ``trainer.states``
(``Trainer.save_states``: momentum and optimizer) and ``meta.json`` (iteration, epoch, seed,
model description, full config, metrics). It is written to a temporary file in the same
folder, flushed to disk and renamed over the final name, so a crash or a full disk at any
moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import mxnet as mx

SUFFIX = ".ckpt"
_NAME = re.compile(r"iter-(\d+)\.ckpt$")
MODEL_KEYS = ("backbone", "head", "num_classes", "aux")  # what must match to load all weights


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message says which file and why."""


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:07d}{SUFFIX}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path, net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer], meta: dict) -> Path:
    """Write ``net`` (and ``trainer``'s state) with ``meta`` to ``path`` atomically.

    Raises :class:`CheckpointError` if the file cannot be written (disk full, no permission);
    any earlier file at ``path`` is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=path.parent))
    partial = path.with_name(f".{path.name}.partial")
    try:
        net.save_parameters(str(staging / "net.params"))
        if trainer is not None:
            trainer.save_states(str(staging / "trainer.states"))
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("meta.json", json.dumps(meta, indent=1, default=str))
            for member in sorted(os.listdir(staging)):
                archive.write(staging / member, member)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
        _fsync_dir(path.parent)
    except (OSError, mx.base.MXNetError) as err:
        partial.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {err}; "
                              f"the previous checkpoint files are intact") from err
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return path


def read_meta(path) -> dict:
    """The ``meta.json`` of a checkpoint; :class:`CheckpointError` if it is not a complete one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"meta.json", "net.params"} <= names:
                raise CheckpointError(f"{path} is not a deeplab-gluon checkpoint (members: {sorted(names)})")
            return json.loads(archive.read("meta.json"))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None


def model_mismatch(meta: dict, model: dict) -> List[str]:
    """Human-readable differences between a checkpoint's model and the wanted one."""
    saved = meta.get("model", {})
    return [f"{key}: checkpoint has {saved.get(key)!r}, this run has {model.get(key)!r}"
            for key in MODEL_KEYS if saved.get(key) != model.get(key)]


def load_checkpoint(path, net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer] = None, ctx=None,
                    model: Optional[dict] = None, backbone_only: bool = False) -> dict:
    """Load a checkpoint into ``net`` (and ``trainer``) and return its meta.

    With ``model`` given (the dict stored as ``meta["model"]``), a checkpoint of another
    architecture or class count is refused with what differs, unless ``backbone_only``, which
    loads the backbone's weights alone (for fine-tuning on other classes).
    """
    meta = read_meta(path)
    if model is not None and not backbone_only:
        differences = model_mismatch(meta, model)
        if differences:
            raise CheckpointError(f"{path} does not fit this model ({'; '.join(differences)}); "
                                  f"pass --load_backbone_only to take the backbone weights alone")
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path) as archive:
        archive.extractall(scratch)
        params_file = os.path.join(scratch, "net.params")
        try:
            if backbone_only:
                saved = mx.nd.load(params_file)
                backbone = {k[len("backbone."):]: v for k, v in saved.items() if k.startswith("backbone.")}
                target = net.backbone._collect_params_with_prefix()
                if set(target) != set(backbone):
                    raise CheckpointError(f"{path}: backbone parameters differ "
                                          f"({len(set(target) ^ set(backbone))} names do not match)")
                for name, param in target.items():
                    if tuple(param.shape) != tuple(backbone[name].shape):
                        raise CheckpointError(f"{path}: backbone.{name} has shape {backbone[name].shape}, "
                                              f"this model has {param.shape}")
                    param._load_init(backbone[name], ctx)
            else:
                net.load_parameters(params_file, ctx=ctx)
            states = os.path.join(scratch, "trainer.states")
            if trainer is not None and os.path.exists(states):
                trainer.load_states(states)
        except (AssertionError, mx.base.MXNetError, ValueError) as err:
            raise CheckpointError(f"cannot load {path}: {str(err).splitlines()[0]}") from None
    return meta


def list_checkpoints(folder) -> List[Path]:
    """Complete checkpoints in ``folder``, oldest first (by iteration)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(folder) -> Optional[Path]:
    """The newest checkpoint in ``folder`` that reads back; None if there is none."""
    for path in reversed(list_checkpoints(folder)):
        try:
            read_meta(path)
            return path
        except CheckpointError:
            continue
    return None


def prune_checkpoints(folder, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and what a crash mid-write left, in ``folder``."""
    folder = Path(folder)
    for stale in folder.glob(".*.partial"):  # left by a crash mid-write
        stale.unlink(missing_ok=True)
    for stale in folder.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep > 0:
        for path in list_checkpoints(folder)[:-keep]:
            path.unlink(missing_ok=True)


def find_checkpoint(path) -> Path:
    """``path`` itself if it is a file; for a run folder, its newest complete checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} holds no complete checkpoint")
        return found
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def open_checkpoint(path) -> Tuple[Path, dict]:
    """``(file, meta)`` of the checkpoint ``path`` names (a file, or a run folder's newest complete
    one); :class:`CheckpointError` if there is none or its meta does not describe its model."""
    path = find_checkpoint(path)
    meta = read_meta(path)
    if not meta.get("model"):
        raise CheckpointError(f"{path} does not describe its model (no 'model' in meta.json)")
    return path, meta


def load_model(path, ctx=None, output_stride: Optional[int] = None):
    """Rebuild the network a checkpoint (or a run folder's latest checkpoint) holds, for inference.

    Returns ``(net, meta)``; ``net`` is hybridized and on ``ctx`` (a context or a list).
    ``output_stride`` overrides the trained one (e.g. 8 for a model trained at 16).
    """
    from .models import build_model

    path, meta = open_checkpoint(path)
    ctx = ctx or mx.cpu()
    net = build_model(meta["model"], ctx, output_stride=output_stride, initialize=False)
    load_checkpoint(path, net, None, ctx)
    net.hybridize(static_alloc=True)
    meta["path"] = str(path)
    return net, meta
