"""One training run per run folder (issue 18, item 1): the lock, its holder's name, stale locks."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deeplab_gluon.run_lock import LOCK_NAME, RunFolderLocked, run_folder_lock
from deeplab_gluon.train import main

REPO = Path(__file__).resolve().parents[1]

# Takes the lock, forks a child that lives on (as a data-loader worker would), says "held", sleeps.
HOLDER = """
import os, sys, time
from deeplab_gluon.run_lock import run_folder_lock
with run_folder_lock(sys.argv[1]):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    try:
        assert holder.stdout.readline() == "held\n"
        record = json.loads((run / LOCK_NAME).read_text())
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        code = main(["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--max_iter", "1",
                     "--output_dir", str(run)])
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["since"]))
        assert code == 2
        assert capsys.readouterr().err == (
            f"train.py: error: --output_dir {run} is in use by another training run (host {socket.gethostname()}, "
            f"pid {holder.pid}, since {since}); wait for it to finish or choose another --output_dir\n")
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing of the refused run's
        assert not (tmp_path / "toy").exists()  # refused before any work, the toy set included

        # The holder dies without cleaning up; its forked child lives on but does not keep the lock.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with run_folder_lock(run) as lock:
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert "was left by a run that is no longer running (host" in capsys.readouterr().err
        assert not (run / LOCK_NAME).exists()  # released and removed on leaving
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def test_the_lock_is_exclusive_within_a_process_too_and_released_on_errors(tmp_path):
    with run_folder_lock(tmp_path):
        with pytest.raises(RunFolderLocked, match=f"pid {os.getpid()}"):
            with run_folder_lock(tmp_path):
                pass
    with pytest.raises(ZeroDivisionError):
        with run_folder_lock(tmp_path):
            1 / 0
    with run_folder_lock(tmp_path):  # released by the failure above
        pass


def test_a_folder_created_for_a_refused_run_is_removed_and_workers_take_no_lock(tmp_path):
    with pytest.raises(ValueError):
        with run_folder_lock(tmp_path / "new" / "run"):
            raise ValueError("refused before writing anything")
    assert not (tmp_path / "new").exists()
    with run_folder_lock(tmp_path, enabled=False) as lock:  # a distributed run's worker 1
        assert lock is None and not (tmp_path / LOCK_NAME).exists()
