"""The OpenMP thread choice: the user's setting, affinity, cgroup quotas, SMT siblings, and that MXNet
really computes with the chosen count (threads that accumulate CPU time, in fresh processes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplab_gluon import cpu_threads
from deeplab_gluon.cpu_threads import (CHOICE_MARK, MXNET_MAX_THREADS, ThreadChoice, cgroup_cpu_limit, choose_threads,
                                       parse_cpu_list, physical_cores)

REPO = Path(__file__).resolve().parents[1]


def fake_topology(root: Path, siblings: dict) -> Path:
    """``/sys/devices/system/cpu`` with ``cpu<N>/topology/thread_siblings_list`` for each CPU."""
    for cpu, text in siblings.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(text + "\n")
    return root


def fake_cgroup(tmp_path: Path, proc_line: str, files: dict):
    """A /proc/self/cgroup holding ``proc_line`` and a cgroup mount with ``files`` ({relative path: text})."""
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line + "\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text + "\n")
    return proc, root


@pytest.fixture
def no_cgroup(tmp_path):
    return dict(proc_cgroup=tmp_path / "absent", cgroup_root=tmp_path / "absent_root")


def test_cpu_lists_parse_as_the_kernel_writes_them():
    assert parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpu_list("5") == {5}


def test_one_thread_per_physical_core_counting_smt_siblings_once(tmp_path, no_cgroup):
    topology = fake_topology(tmp_path / "cpu", {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert physical_cores([0, 1, 2, 3], topology) == 2
    assert physical_cores([0, 2], topology) == 1  # both hyper-threads of one core
    choice = choose_threads(environ={}, cpus=[0, 1, 2, 3], topology=topology, **no_cgroup)
    assert (choice.threads, choice.source, choice.usable_cpus, choice.physical_cores) == (2, "physical cores", 4, 2)


def test_the_affinity_mask_limits_the_choice(monkeypatch, tmp_path, no_cgroup):
    topology = fake_topology(tmp_path / "cpu", {cpu: str(cpu) for cpu in range(8)})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7}, raising=False)
    choice = choose_threads(environ={}, topology=topology, **no_cgroup)
    assert (choice.threads, choice.usable_cpus) == (3, 3)


def test_a_cgroup_v2_quota_caps_the_count_rounded_down_tightest_ancestor_first(tmp_path):
    topology = fake_topology(tmp_path / "cpu", {cpu: str(cpu) for cpu in range(8)})
    proc, root = fake_cgroup(tmp_path, "0::/user.slice/job", {"user.slice/job/cpu.max": "350000 100000",
                                                               "user.slice/cpu.max": "max 100000"})
    assert cgroup_cpu_limit(proc, root) == 3.5
    choice = choose_threads(environ={}, cpus=range(8), topology=topology, proc_cgroup=proc, cgroup_root=root)
    assert (choice.threads, choice.cpu_quota) == (3, 3.5)
    (root / "user.slice" / "cpu.max").write_text("150000 100000\n")  # a parent's limit applies too
    assert choose_threads(environ={}, cpus=range(8), topology=topology, proc_cgroup=proc,
                          cgroup_root=root).threads == 1
    (root / "user.slice" / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert choose_threads(environ={}, cpus=range(8), topology=topology, proc_cgroup=proc,
                          cgroup_root=root).threads == 1


def test_a_cgroup_v1_quota_inside_a_container_is_read_at_the_mount_root(tmp_path):
    # the host's path (/docker/abc) does not exist in the container's view of the hierarchy
    proc, root = fake_cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc",
                             {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_limit(proc, root) == 2.0
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(proc, root) is None


def test_the_users_omp_num_threads_wins(tmp_path, no_cgroup):
    topology = fake_topology(tmp_path / "cpu", {0: "0", 1: "1"})
    choice = choose_threads(environ={"OMP_NUM_THREADS": "3"}, cpus=[0, 1], topology=topology, **no_cgroup)
    assert (choice.threads, choice.source) == (3, "OMP_NUM_THREADS")
    assert "OMP_NUM_THREADS=3 in the environment" in choice.describe()


def test_our_own_setting_inherited_from_a_parent_is_not_taken_for_the_users(tmp_path, no_cgroup):
    topology = fake_topology(tmp_path / "cpu", {0: "0", 1: "1"})
    kwargs = dict(cpus=[0], topology=topology, **no_cgroup)
    # a parent on 2 cores chose 2; this child may use one CPU: chosen again
    inherited = {MXNET_MAX_THREADS: "2", CHOICE_MARK: "2 physical cores"}
    assert (choose_threads(environ=inherited, **kwargs).threads, choose_threads(environ=inherited, **kwargs).source) \
        == (1, "physical cores")
    # a parent run with --threads keeps its count in its children
    flagged = {MXNET_MAX_THREADS: "1", CHOICE_MARK: "1 --threads"}
    assert choose_threads(environ=flagged, cpus=[0, 1], topology=topology, **no_cgroup).source == "--threads"
    # the same variable set by the user (no mark, or another value) is the user's
    assert choose_threads(environ={MXNET_MAX_THREADS: "2"}, **kwargs).source == MXNET_MAX_THREADS


def test_threads_flag_overrides_and_is_checked(tmp_path, no_cgroup):
    topology = fake_topology(tmp_path / "cpu", {0: "0", 1: "1"})
    kwargs = dict(environ={"OMP_NUM_THREADS": "2"}, cpus=[0, 1], topology=topology, **no_cgroup)
    assert choose_threads(1, **kwargs).source == "--threads"
    for bad in (0, 3):
        with pytest.raises(ValueError, match="--threads must be between 1 and the 2 logical CPUs"):
            choose_threads(bad, **kwargs)


def test_the_choice_is_one_line_and_a_dict_for_config_json():
    choice = ThreadChoice(2, "physical cores", usable_cpus=4, physical_cores=2, cpu_quota=None)
    line = choice.describe()
    assert "\n" not in line and line.startswith("MXNet CPU threads: 2 (one per usable physical core")
    assert json.loads(json.dumps(choice.as_dict()))["line"] == line


# ---------------------------------------------------------------------------- in fresh processes, measured

PROBE = r"""
import json, os, sys
import deeplab_gluon
import mxnet as mx
from deeplab_gluon import cpu_threads

def thread_ticks():
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return ticks

def busy_threads(work):
    # threads that did at least a third of the busiest one's work: the OpenMP team (spinning or computing)
    before = thread_ticks()
    work()
    after = thread_ticks()
    spent = [after[t] - before.get(t, 0) for t in after]
    return sum(1 for s in spent if s >= max(spent) / 3 and s >= 5)

def convolutions():
    x, w = mx.nd.random.uniform(shape=(1, 64, 160, 160)), mx.nd.random.uniform(shape=(64, 64, 3, 3))
    for _ in range(20):
        y = mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=64, no_bias=True)
    y.wait_to_read()

if len(sys.argv) > 1 and sys.argv[1] == "--threads":
    print("started", os.getpid(), flush=True)
    cpu_threads.use_threads(int(sys.argv[2]))
result = {"chosen": cpu_threads.current_choice().threads, "source": cpu_threads.current_choice().source,
          "busy": busy_threads(convolutions), "pid": os.getpid()}
if len(sys.argv) > 1 and sys.argv[1] == "--loader":
    import cv2
    import numpy as np
    cv2.resize(np.zeros((2000, 2000, 3), np.float32), (3000, 3000))  # the parent's OpenCV threads exist
    result["parent_cv2_threads_before"] = cv2.getNumThreads()
    class Probe(mx.gluon.data.Dataset):
        def __len__(self):
            return 1
        def __getitem__(self, index):
            return np.array([busy_threads(convolutions), cv2.getNumThreads()], dtype="float32")
    batch = next(iter(mx.gluon.data.DataLoader(Probe(), batch_size=1, num_workers=1, timeout=60)))
    result["worker_busy"], result["worker_cv2_threads"] = (int(v) for v in batch.asnumpy()[0])
    result["parent_cv2_threads"] = cv2.getNumThreads()
print("RESULT", json.dumps(result))
"""


def run_probe(args=(), cpus=None, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", MXNET_MAX_THREADS, CHOICE_MARK)}
    env.update(PYTHONPATH=str(REPO), **(env_extra or {}))
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=180,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    lines = done.stdout.splitlines()
    results = [json.loads(line[len("RESULT "):]) for line in lines if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, done.stderr[-2000:]
    return results[-1], lines


def usable_cpu_count():
    return len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_mxnet_computes_with_the_chosen_number_of_threads():
    one, _ = run_probe(cpus={sorted(os.sched_getaffinity(0))[0]})
    assert (one["chosen"], one["busy"]) == (1, 1)
    if usable_cpu_count() < 2 or physical_cores(sorted(os.sched_getaffinity(0))[:2]) < 2:
        pytest.skip("needs two physical cores")
    two, _ = run_probe(cpus=set(sorted(os.sched_getaffinity(0))[:2]))
    assert (two["chosen"], two["busy"]) == (2, 2)
    user, _ = run_probe(cpus=set(sorted(os.sched_getaffinity(0))[:2]), env_extra={"OMP_NUM_THREADS": "1"})
    assert (user["chosen"], user["source"], user["busy"]) == (1, "OMP_NUM_THREADS", 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_threads_flag_after_import_restarts_the_process_with_that_count():
    if usable_cpu_count() < 2:
        pytest.skip("needs two CPUs")
    result, lines = run_probe(["--threads", "1"], cpus=set(sorted(os.sched_getaffinity(0))[:2]))
    started = [line for line in lines if line.startswith("started")]
    assert len(started) == 2 and len(set(started)) == 1  # ran twice, same process (execve)
    assert (result["chosen"], result["source"], result["busy"]) == (1, "--threads", 1)


def test_threads_flag_without_restart_says_why_it_cannot_apply(monkeypatch):
    import mxnet  # noqa: F401  (loaded, as in every CLI)

    monkeypatch.setattr(cpu_threads, "_current", cpu_threads.ThreadChoice(2, "physical cores", 2, 2, None))
    monkeypatch.setattr(cpu_threads, "choose_threads", lambda requested, environ: ThreadChoice(
        requested, "--threads", 2, 2, None))
    with pytest.raises(cpu_threads.ThreadsError, match="set OMP_NUM_THREADS=1 before starting Python"):
        cpu_threads.use_threads(1, restart=False)
    assert cpu_threads.use_threads(2, restart=False).threads == 2  # already in effect: nothing to do


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_forked_loader_workers_compute_with_one_thread():
    if usable_cpu_count() < 2 or physical_cores(sorted(os.sched_getaffinity(0))[:2]) < 2:
        pytest.skip("needs two physical cores")
    result, _ = run_probe(["--loader"], cpus=set(sorted(os.sched_getaffinity(0))[:2]))
    assert (result["busy"], result["worker_busy"], result["worker_cv2_threads"]) == (2, 1, 1)
    assert result["parent_cv2_threads"] == result["parent_cv2_threads_before"] > 1  # lowered around the fork only
