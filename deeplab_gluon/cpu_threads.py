"""How many OpenMP threads MXNet computes with on the CPU: one per physical core this process may use.

MXNet 1.9.1 fixes its OpenMP thread count when its library loads, and by default takes half the
logical CPUs (it assumes two hyper-threads per core), which is one thread on a 2-vCPU machine
without SMT. Nothing changes the count after ``import mxnet``: ``MXSetNumOMPThreads`` only sets the
calling thread's OpenMP value, while the operators run on MXNet's engine threads (measured in
docs/performance.md). So the package decides before MXNet loads, from ``deeplab_gluon/__init__.py``:

* the user's ``OMP_NUM_THREADS`` (or ``MXNET_OMP_MAX_THREADS``) wins when set;
* otherwise one thread per physical core among the CPUs this process may run on (its affinity
  mask), counting SMT siblings once, and no more than a cgroup CPU quota allows (rounded down).

The choice goes to MXNet as ``MXNET_OMP_MAX_THREADS`` rather than ``OMP_NUM_THREADS``: with the
latter set, MXNet's fork handler no longer drops forked data-loader workers to one OpenMP thread,
and each worker would compute with every core too. Loader workers also get one OpenCV thread.

``--threads N`` is applied by :func:`use_threads` once a command line is parsed; since MXNet is
loaded by then, a different count restarts the process (``execve``) with the count in place.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import FrozenSet, Iterable, List, Mapping, MutableMapping, Optional, Tuple

from .flags import flag

MXNET_MAX_THREADS = "MXNET_OMP_MAX_THREADS"  # read by MXNet when its library loads
OMP_NUM_THREADS = "OMP_NUM_THREADS"
# "<threads> <source>" as this package set it, so that child processes (benchmark workers, loader
# processes started by spawn, distributed workers) can tell our setting from the user's
CHOICE_MARK = "DEEPLAB_GLUON_THREADS"
RESTARTED_MARK = "DEEPLAB_GLUON_THREADS_RESTARTED"  # set across the execve of use_threads, against loops
SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")

FROM_FLAG, FROM_CORES, MXNET_DEFAULT = "--threads", "physical cores", "MXNet's default"


def _count(number, noun: str) -> str:
    return f"{number:g} {noun}{'' if number == 1 else 's'}"


@dataclass(frozen=True)
class ThreadChoice:
    """The OpenMP thread count of MXNet's CPU operators in this process, and why."""
    threads: int
    source: str                   # "physical cores", "--threads", "OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS" or
    #                               "MXNet's default" (MXNet was loaded before this package could choose)
    usable_cpus: int              # logical CPUs in this process's affinity mask
    physical_cores: int           # distinct physical cores among them (SMT siblings counted once)
    cpu_quota: Optional[float]    # cgroup CPU limit in CPUs; None when unlimited
    applied: bool = True          # False: MXNet was loaded before this choice could reach it

    def describe(self) -> str:
        """One line for logs: the count, where it comes from, and what the process may use."""
        quota = f"cgroup limit {_count(self.cpu_quota, 'CPU')}" if self.cpu_quota else "no cgroup CPU limit"
        machine = (f"{_count(self.usable_cpus, 'usable logical CPU')}, {_count(self.physical_cores, 'physical core')}, "
                   f"{quota}")
        if self.source == FROM_CORES:
            why = "one per usable physical core" if not self.cpu_quota or self.cpu_quota >= self.physical_cores \
                else "as many as the cgroup CPU limit allows"
        elif self.source == FROM_FLAG:
            why = f"--threads {self.threads}"
        elif self.source == MXNET_DEFAULT:
            why = "MXNet's default, half the logical CPUs"
        else:
            why = f"{self.source}={self.threads} in the environment"
        line = f"MXNet CPU threads: {self.threads} ({why}; {machine})"
        if not self.applied:
            line += ("; mxnet was imported before deeplab_gluon, too late to choose: import deeplab_gluon first "
                     "or set OMP_NUM_THREADS")
        return line

    def as_dict(self) -> dict:
        """The choice as plain values (for ``config.json`` and results files), with :meth:`describe`'s line."""
        return {**asdict(self), "line": self.describe()}


# ---------------------------------------------------------------------------------------------- the machine

def parse_cpu_list(text: str) -> FrozenSet[int]:
    """``"0-3,8,10-11"`` (the kernel's CPU list format) -> {0, 1, 2, 3, 8, 10, 11}."""
    cpus = set()
    for part in text.strip().split(","):
        if not part.strip():
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def usable_cpus() -> List[int]:
    """Logical CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int], topology: Path = SYS_CPU) -> int:
    """How many physical cores ``cpus`` span: SMT siblings (``thread_siblings_list``) count once.

    A CPU whose topology cannot be read counts as a core of its own.
    """
    cores = set()
    for cpu in cpus:
        siblings = None
        for name in ("thread_siblings_list", "core_cpus_list"):
            try:
                siblings = parse_cpu_list((topology / f"cpu{cpu}" / "topology" / name).read_text())
                break
            except (OSError, ValueError):
                continue
        cores.add(siblings or frozenset([cpu]))
    return max(1, len(cores))


def _cgroup_dirs(mount: Path, cgroup_path: str) -> List[Path]:
    """The folders whose limits apply to a cgroup: its own and its ancestors' under ``mount``.

    Inside a container the path in /proc/self/cgroup is often the host's, which does not exist under
    the container's mount; the mount root (the container's own cgroup) is then what applies.
    """
    folder = mount / cgroup_path.strip("/")
    found = []
    while True:
        if folder.is_dir():
            found.append(folder)
        if folder == mount or mount not in folder.parents:
            break
        folder = folder.parent
    if mount.is_dir() and mount not in found:
        found.append(mount)
    return found


def _read_limit_v2(folder: Path) -> Optional[float]:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _read_limit_v1(folder: Path) -> Optional[float]:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> Optional[float]:
    """The tightest CPU quota (in CPUs, e.g. 1.5) of this process's cgroups, v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``, over its cgroup and their ancestors; None when unlimited."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":  # cgroup v2, the unified hierarchy
            limits += [_read_limit_v2(folder) for folder in _cgroup_dirs(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu controller, possibly co-mounted with cpuacct
            for mount in dict.fromkeys([root / controllers, root / "cpu", root / "cpu,cpuacct"]):
                if mount.is_dir():
                    limits += [_read_limit_v1(folder) for folder in _cgroup_dirs(mount, path)]
    limits = [limit for limit in limits if limit]
    return min(limits) if limits else None


# ------------------------------------------------------------------------------------------------ the choice

def _positive_int(text: Optional[str]) -> Optional[int]:
    """The first count of an OpenMP thread setting (``"4"``, or ``"4,2"`` for nested levels), or None."""
    try:
        value = int(str(text).split(",")[0].strip())
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


def _set_by_us(environ: Mapping[str, str]) -> Optional[Tuple[int, str]]:
    """``(threads, source)`` when this package set ``MXNET_OMP_MAX_THREADS`` (here or in a parent)."""
    mark = environ.get(CHOICE_MARK, "")
    threads, _, source = mark.partition(" ")
    if _positive_int(threads) is not None and environ.get(MXNET_MAX_THREADS) == threads:
        return int(threads), source
    return None


def user_thread_setting(environ: Mapping[str, str] = os.environ) -> Optional[Tuple[int, str]]:
    """``(threads, variable)`` when the user set ``OMP_NUM_THREADS`` or ``MXNET_OMP_MAX_THREADS``."""
    ours = _set_by_us(environ)
    for name in (OMP_NUM_THREADS, MXNET_MAX_THREADS):
        value = _positive_int(environ.get(name))
        if value is not None and not (name == MXNET_MAX_THREADS and ours):
            return value, name
    return None


def choose_threads(requested: Optional[int] = None, environ: Mapping[str, str] = os.environ,
                   cpus: Optional[Iterable[int]] = None, topology: Path = SYS_CPU,
                   proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> ThreadChoice:
    """The thread count for this process: ``requested`` (``--threads``), else the user's environment,
    else one per usable physical core, capped by the cgroup quota (rounded down, at least 1).

    A count this package chose in a parent process for ``--threads`` is kept; one it chose from the
    parent's cores is chosen again, since a child may have other CPUs. ``ValueError`` when
    ``requested`` is below 1 or above the usable logical CPUs (MXNet would not start more).
    """
    cpus = list(usable_cpus() if cpus is None else cpus)
    cores = physical_cores(cpus, topology)
    quota = cgroup_cpu_limit(proc_cgroup, cgroup_root)
    machine = dict(usable_cpus=len(cpus), physical_cores=cores, cpu_quota=quota)
    if requested is not None:
        if not 1 <= int(requested) <= len(cpus):
            raise ValueError(f"--threads must be between 1 and the {len(cpus)} logical CPUs this process may use, "
                             f"got {requested}")
        return ThreadChoice(int(requested), FROM_FLAG, **machine)
    inherited = _set_by_us(environ)
    if inherited and inherited[1] == FROM_FLAG and environ.get(OMP_NUM_THREADS, "") in ("", str(inherited[0])):
        return ThreadChoice(inherited[0], FROM_FLAG, **machine)
    user = user_thread_setting(environ)
    if user is not None:
        return ThreadChoice(user[0], user[1], **machine)
    threads = min(cores, math.floor(quota)) if quota else cores
    return ThreadChoice(max(1, threads), FROM_CORES, **machine)


def _loaded_with(environ: Mapping[str, str], logical_cpus: int) -> Tuple[int, str]:
    """The count an already loaded MXNet took from the environment (as ``engine/openmp.cc`` reads it)."""
    for name in (MXNET_MAX_THREADS, OMP_NUM_THREADS):
        value = _positive_int(environ.get(name))
        if value is not None:
            return value, name
    return max(1, logical_cpus // 2), MXNET_DEFAULT


def _export(choice: ThreadChoice, environ: MutableMapping[str, str]) -> None:
    """Put a choice in the environment MXNet reads when it loads (and child processes inherit)."""
    environ[MXNET_MAX_THREADS] = str(choice.threads)
    environ[CHOICE_MARK] = f"{choice.threads} {choice.source}"
    if choice.source == FROM_FLAG and OMP_NUM_THREADS in environ:
        # MXNet would honour MXNET_OMP_MAX_THREADS, but oneDNN's kernels follow OMP_NUM_THREADS
        environ[OMP_NUM_THREADS] = str(choice.threads)


# ------------------------------------------------------------------------------------- applying it to MXNet

_current: Optional[ThreadChoice] = None
_fork_handler_installed = False
_restarted = False  # this process is the execve of use_threads


_opencv_threads_before_fork: List[int] = []


def _opencv_to_one_thread_for_fork() -> None:
    """Before a fork (data-loader workers): OpenCV down to one thread, which the child inherits, so
    N workers and the main process do not each use every core (MXNet's own fork handler already
    drops the child's operators to one OpenMP thread). Done in the parent and undone after: calling
    ``cv2.setNumThreads`` in the child hangs it when the parent had used OpenCV's thread pool."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        _opencv_threads_before_fork.append(cv2.getNumThreads())
        cv2.setNumThreads(1)


def _opencv_threads_back_after_fork() -> None:
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and _opencv_threads_before_fork:
        cv2.setNumThreads(_opencv_threads_before_fork.pop())


def configure_mxnet_threads(environ: MutableMapping[str, str] = os.environ) -> ThreadChoice:
    """Choose the thread count and hand it to MXNet; must run before ``import mxnet`` to take effect
    (``deeplab_gluon/__init__.py`` calls it). Returns the count in effect: when MXNet was already
    loaded with another, that one, with ``applied=False``. Also makes forked loader workers
    single-threaded."""
    global _current, _fork_handler_installed, _restarted
    _restarted = environ.pop(RESTARTED_MARK, None) is not None  # not for this process's own children
    choice = choose_threads(environ=environ)
    if "mxnet" in sys.modules:
        threads, source = _loaded_with(environ, choice.usable_cpus)
        if threads != choice.threads:
            choice = replace(choice, threads=threads, source=source, applied=False)
    elif choice.source in (FROM_CORES, FROM_FLAG):
        _export(choice, environ)
    if not _fork_handler_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_opencv_to_one_thread_for_fork, after_in_parent=_opencv_threads_back_after_fork)
        _fork_handler_installed = True
    _current = choice
    return choice


def current_choice() -> ThreadChoice:
    """The thread choice this process runs with (for the log line and ``config.json``)."""
    return _current if _current is not None else choose_threads()


@dataclass
class ThreadsFlag:
    """``--threads``, declared once: the configs of train, evaluate, predict and export inherit it and
    :func:`~deeplab_gluon.cli.run_job` applies it with :func:`use_threads`."""

    threads: Optional[int] = field(default=None, metadata=flag(
        "OpenMP threads of MXNet's CPU operators; default: OMP_NUM_THREADS if set, else one per physical core "
        "this process may use", group="threads"))


class ThreadsError(RuntimeError):
    """``--threads`` cannot take effect in this process; the message says why and what to do."""


def use_threads(requested: Optional[int], restart: bool = True,
                environ: MutableMapping[str, str] = os.environ) -> ThreadChoice:
    """Apply a ``--threads`` value after the command line is parsed.

    ``None`` or the count already in effect: nothing to do. Before MXNet is loaded the count is
    simply exported. After (the usual case: the CLI modules import MXNet), MXNet cannot change it,
    so with ``restart`` the process replaces itself (``os.execve``, same PID and arguments) with
    the count in its environment; without (a CLI's ``main(argv)`` called from Python), or if a
    restart did not take, :class:`ThreadsError`. ``ValueError`` for counts out of range.
    """
    global _current
    current = current_choice()
    if requested is None or requested == current.threads:
        return current
    choice = choose_threads(requested, environ)
    if "mxnet" not in sys.modules:
        _export(choice, environ)
        _current = choice
        return choice
    hint = f"set OMP_NUM_THREADS={requested} before starting Python"
    if not restart or _restarted:
        raise ThreadsError(f"--threads {requested} cannot take effect in this process: MXNet was loaded with "
                           f"{current.threads} thread{'s' if current.threads != 1 else ''}; {hint}")
    env = dict(environ)
    _export(choice, env)
    env[RESTARTED_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    os.execve(sys.executable, [sys.executable] + argv[1:], env)
    raise AssertionError("unreachable")  # pragma: no cover
