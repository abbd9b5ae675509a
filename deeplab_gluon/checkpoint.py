"""Crash-safe checkpoints: the :class:`Checkpoint` object, and the run folder's checkpoint housekeeping.

A checkpoint is one zip file holding ``net.params`` (``save_parameters``), ``trainer.states``
(``Trainer.save_states``: momentum and optimizer) and ``meta.json`` (iteration, epoch, seed, the
:class:`~deeplab_gluon.models.ModelSpec` as ``model``, full config, metrics). It is written to a
temporary file in the same folder, flushed to disk and renamed over the final name, so a crash or a
full disk at any moment leaves either the old file or the new one, never half of one. On reading,
every member's CRC-32 is checked, so a damaged file is refused before anything is loaded from it.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

import mxnet as mx
import numpy as np

from .errors import JobError, UsageError, mxnet_reason
from .models import ModelSpec, build_model

SUFFIX = ".ckpt"
_NAME = re.compile(r"iter-(\d+)\.ckpt$")


class CheckpointError(JobError):
    """A checkpoint cannot be written, read or applied; the message says which file and why.

    A job failure (exit code 1) when met during the work; the command lines turn one met before the
    work (``--checkpoint``, ``--init_from``, ``--resume``) into a usage error.
    """


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:07d}{SUFFIX}"


class Checkpoint:
    """One checkpoint file and its meta, read once.

    ``Checkpoint.open(path)`` takes a file or a run folder (its newest complete checkpoint);
    ``.spec`` is the network it holds, ``.load(ctx)`` rebuilds that network for inference and
    ``.load_into(net, trainer)`` restores a training run.
    """

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = Path(path), meta

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, iteration={self.iteration})"

    # ---------------------------------------------------------------------------------- finding
    @classmethod
    def read(cls, path) -> "Checkpoint":
        """The checkpoint in the file ``path``; :class:`CheckpointError` if it is not a complete, intact one."""
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if not {"meta.json", "net.params"} <= names:
                    raise CheckpointError(f"{path} is not a deeplab-gluon checkpoint (members: {sorted(names)})")
                damaged = archive.testzip()  # reads every member and checks its CRC-32
                if damaged is not None:
                    raise CheckpointError(f"{path} is damaged: {damaged} fails its checksum")
                return cls(path, json.loads(archive.read("meta.json")))
        except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError, EOFError) as err:
            raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None

    @classmethod
    def open(cls, path) -> "Checkpoint":
        """The checkpoint ``path`` names: the file itself, or a run folder's newest complete checkpoint
        (in ``checkpoints/`` or the folder itself). :class:`CheckpointError` if there is none or its
        meta does not describe its model."""
        path = Path(path)
        if path.is_dir():
            found = cls.latest(path / "checkpoints") or cls.latest(path)
            if found is None:
                raise CheckpointError(f"{path} holds no complete checkpoint")
        elif path.is_file():
            found = cls.read(path)
        else:
            raise CheckpointError(f"no checkpoint at {path}")
        if not found.meta.get("model"):
            raise CheckpointError(f"{found.path} does not describe its model (no 'model' in meta.json)")
        found.spec  # a description this version cannot build is refused here, before any work
        return found

    @classmethod
    def latest(cls, folder) -> Optional["Checkpoint"]:
        """The newest checkpoint in ``folder`` that reads back intact, or None.

        Each newer one that does not is named on stderr with the reason, in one line.
        """
        for path in reversed(list_checkpoints(folder)):
            try:
                return cls.read(path)
            except CheckpointError as err:
                print(f"warning: skipped checkpoint {path.name}: {err}", file=sys.stderr)
        return None

    @classmethod
    def of_epoch(cls, folder, epoch: int) -> "Checkpoint":
        """The checkpoint written at the end of ``epoch`` in ``folder``; :class:`CheckpointError` if none is kept."""
        kept = list_checkpoints(folder)
        for path in reversed(kept):
            # Only meta.json is read to find the epoch: a damaged newer checkpoint must not block an older
            # one; the full check (every member's CRC) runs on the one asked for.
            try:
                with zipfile.ZipFile(path) as archive:
                    meta = json.loads(archive.read("meta.json"))
            except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError, EOFError) as err:
                print(f"warning: skipped checkpoint {path.name}: cannot read its meta.json: {err}", file=sys.stderr)
                continue
            if isinstance(meta, dict) and meta.get("end_of_epoch") and meta.get("epoch") == epoch:
                return cls.read(path)
        raise CheckpointError(f"no checkpoint from the end of epoch {epoch} in {folder} "
                              f"(kept: {[p.name for p in kept]})")

    # ------------------------------------------------------------------------------- what it is
    @property
    def spec(self) -> ModelSpec:
        """The network this checkpoint holds."""
        try:
            return ModelSpec.from_dict(self.meta["model"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{self.path}: its model description cannot be used: {err}") from None

    @property
    def iteration(self) -> Optional[int]:
        return self.meta.get("iteration")

    @property
    def classes(self) -> List[str]:
        """Class names as trained (empty when the checkpoint does not record them)."""
        return list(self.meta.get("classes") or [])

    # ---------------------------------------------------------------------------------- writing
    @classmethod
    def write(cls, path, net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer], meta: dict) -> "Checkpoint":
        """Write ``net`` (and ``trainer``'s state) with ``meta`` to ``path`` atomically.

        Raises :class:`CheckpointError` if the file cannot be written (disk full, no permission);
        any earlier file at ``path`` is then left as it was.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(path, net, trainer)
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
            for report in path.parent.glob(f"{path.name}.eval-*.json"):  # scores of the file just replaced
                report.unlink(missing_ok=True)
        except (OSError, mx.base.MXNetError) as err:
            partial.unlink(missing_ok=True)
            raise CheckpointError(f"could not write checkpoint {path}: {err}; "
                                  f"the previous checkpoint files are intact") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(path, meta)

    # ---------------------------------------------------------------------------------- loading
    def load(self, ctx=None, output_stride: Optional[int] = None):
        """The network this checkpoint holds, with its weights, hybridized, on ``ctx`` (a context or a list).

        ``output_stride`` overrides the trained one (e.g. 8 for a model trained at 16: same weights).
        """
        spec = self.spec if output_stride is None else self.spec.replace(output_stride=output_stride)
        ctx = ctx or mx.cpu()
        net = build_model(spec, ctx, initialize=False)
        self.load_into(net, ctx=ctx)
        net.hybridize(static_alloc=True)
        return net

    def load_into(self, net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer] = None, ctx=None,
                  expect: Optional[ModelSpec] = None, backbone_only: bool = False) -> None:
        """Load the weights into ``net`` (and the optimizer state into ``trainer``).

        With ``expect`` (the spec ``net`` was built from), a checkpoint of another architecture or
        class count is refused with what differs, unless ``backbone_only``, which loads the
        backbone's weights alone (for fine-tuning on other classes).
        """
        if expect is not None and not backbone_only:
            if differences := self.spec.weight_differences(expect):
                raise CheckpointError(f"{self.path} does not fit this model ({'; '.join(differences)})")
        with tempfile.TemporaryDirectory() as scratch:
            try:
                with zipfile.ZipFile(self.path) as archive:
                    archive.extractall(scratch)
            except (OSError, zipfile.BadZipFile, EOFError) as err:
                raise CheckpointError(f"cannot read checkpoint {self.path}: {err}") from None
            params_file = os.path.join(scratch, "net.params")
            try:
                if backbone_only:
                    self._load_backbone(params_file, net, ctx)
                else:
                    net.load_parameters(params_file, ctx=ctx)
                states = os.path.join(scratch, "trainer.states")
                if trainer is not None and os.path.exists(states):
                    trainer.load_states(states)
            except (AssertionError, mx.base.MXNetError, ValueError) as err:
                raise CheckpointError(f"cannot load {self.path}: {mxnet_reason(err)}") from None

    def _load_backbone(self, params_file: str, net: mx.gluon.Block, ctx) -> None:
        saved = mx.nd.load(params_file)
        backbone = {k[len("backbone."):]: v for k, v in saved.items() if k.startswith("backbone.")}
        target = net.backbone._collect_params_with_prefix()
        if set(target) != set(backbone):
            raise CheckpointError(f"{self.path}: backbone parameters differ "
                                  f"({len(set(target) ^ set(backbone))} names do not match)")
        for name, param in target.items():
            if tuple(param.shape) != tuple(backbone[name].shape):
                raise CheckpointError(f"{self.path}: backbone.{name} has shape {backbone[name].shape}, "
                                      f"this model has {param.shape}")
            param._load_init(backbone[name], ctx)


def estimated_size(net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer]) -> int:
    """Bytes a checkpoint of ``net`` takes: its parameters, and as much again for the optimizer's state
    (SGD momentum) of those that learn."""
    size = 0
    for param in net.collect_params().values():
        if param._data is None:  # not initialised yet: nothing to save
            continue
        data = param.data()
        nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
        size += nbytes * (2 if trainer is not None and param.grad_req != "null" else 1)
    return size + (1 << 20)  # meta.json and the archive's own records


def check_free_space(path: Path, net: mx.gluon.Block, trainer: Optional[mx.gluon.Trainer]) -> None:
    """:class:`CheckpointError` when ``path``'s folder cannot hold a checkpoint's write: the staging files
    and the archive made from them, about twice the checkpoint's size."""
    needed = 2 * estimated_size(net, trainer)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointError(f"not enough free space for checkpoint {path}: writing it needs about "
                              f"{needed / 2**20:.0f} MiB, {path.parent} has {free / 2**20:.0f} MiB free; "
                              f"the previous checkpoint files are intact")


def load_model(path, ctx=None, output_stride: Optional[int] = None, precision: Optional[str] = None, **calibration):
    """The trained fp32 network in a checkpoint file or run folder: ``Checkpoint.open(path).load(ctx,
    output_stride)``. With ``precision`` use :func:`deeplab_gluon.load_model` (:mod:`deeplab_gluon.precision`,
    a layer above this one, which this module does not import: docs/architecture.md)."""
    if precision is not None or calibration:
        raise TypeError("deeplab_gluon.checkpoint.load_model loads fp32 only; for precision= use "
                        "deeplab_gluon.load_model (deeplab_gluon.precision.load_model)")
    return Checkpoint.open(path).load(ctx, output_stride)


def checkpoint_flag(path, flag_name: str = "--checkpoint") -> "Checkpoint":
    """The :class:`Checkpoint` a flag names; :class:`~deeplab_gluon.errors.UsageError` ``<flag>: <why>``
    (a checkpoint named on the command line that cannot be opened is the command's fault, exit 2)."""
    try:
        return Checkpoint.open(path)
    except CheckpointError as err:
        raise UsageError(f"{flag_name}: {err}") from None


# ------------------------------------------------------------------------------ run-folder housekeeping

def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def list_checkpoints(folder) -> List[Path]:
    """Checkpoint files (``iter-*.ckpt``) in ``folder``, oldest first (by iteration)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def prune_checkpoints(folder, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (with their cached int8 models), and what a crash
    mid-write left, in ``folder``."""
    folder = Path(folder)
    for stale in folder.glob(".*.partial"):  # left by a crash mid-write
        stale.unlink(missing_ok=True)
    for stale in folder.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep > 0:
        for path in list_checkpoints(folder)[:-keep]:
            for derived in folder.glob(f"{path.name}.int8-*"):  # precision.int8_cache_prefix
                derived.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
