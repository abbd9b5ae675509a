"""One training run per run folder: an exclusive lock held for the run's lifetime.

Two runs writing into one ``--output_dir`` corrupt each other (one prunes the other's staging files,
``config.json`` describes one and the checkpoints the other). A run therefore holds ``run.lock`` in
its folder: ``fcntl.flock`` on that file, which the kernel releases when the process ends however it
ends (SIGKILL, power loss of a remote client aside), and the file records who holds it (host, pid,
since when) so that a refused run can say so in one line.

A lock file whose lock nobody holds was left by a run that died: it is taken over, with a note.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from .errors import UsageError

LOCK_NAME = "run.lock"

# Descriptors of the locks this process holds. A forked child (a data-loader worker) inherits them, and
# flock belongs to the open file, not the process: a worker outliving a killed run would keep the
# folder locked. Children close their copies at once.
_HELD = set()


def _close_inherited_locks() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class RunFolderLocked(UsageError):
    """Another live process holds the run folder; the message names it (exit code 2: choose another
    ``--output_dir`` or wait for that run)."""


def describe_holder(record: dict) -> str:
    """``host h, pid 12, since 2026-11-23 08:13:38`` from a lock file's record."""
    since = record.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"host {record.get('host', '?')}, pid {record.get('pid', '?')}, since {when}"


def _read_record(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        record = json.loads(text) if text.strip() else {}
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire(path: Path) -> tuple:
    """``(fd, record left by an earlier holder)`` once ``path`` is locked by this process."""
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            record = _read_record(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = describe_holder(record) if record else "another process"
                raise RunFolderLocked(
                    f"--output_dir {path.parent} is in use by another training run ({holder}); wait for it to "
                    f"finish or choose another --output_dir") from None
            raise
        # The holder may have unlinked the file between our open and our lock: then we locked a file
        # that no longer has this name, and must lock the one that does.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, _read_record(fd)
        os.close(fd)
    raise RunFolderLocked(f"--output_dir {path.parent}: could not lock {path} (it keeps being replaced)")


@contextlib.contextmanager
def run_folder_lock(folder, enabled: bool = True) -> Iterator[Optional[Path]]:
    """Hold ``folder/run.lock`` for the ``with`` block (the folder is created if needed).

    :class:`RunFolderLocked` if a live process holds it. On leaving, the file is removed (and the folder
    too, if this run created it and left nothing in it). ``enabled=False`` (a distributed run's
    workers other than 0, which share worker 0's folder) does nothing.
    """
    if not enabled:
        yield None
        return
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd, previous = _acquire(path)
    _HELD.add(fd)
    try:
        if previous:
            print(f"note: {path} was left by a run that is no longer running ({describe_holder(previous)}); "
                  f"taking it over", file=sys.stderr)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield path
    finally:
        # unlink before unlocking: a run that opened the old file then finds it renamed away (see _acquire)
        with contextlib.suppress(OSError):
            path.unlink()
        _HELD.discard(fd)
        os.close(fd)
        for path in created:  # only if empty: a run refused before writing anything leaves no trace
            with contextlib.suppress(OSError):
                path.rmdir()
