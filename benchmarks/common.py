"""Shared helpers of the benchmarks: machine description, load checks, timing, MAC counting, results I/O.

Every benchmark script imports this module (``benchmarks/`` is put on ``sys.path`` by the scripts),
so the JSON files all describe the machine the same way and all timings follow the same rules:
warm up first, repeat, report the median (the typical run) and the minimum (the least disturbed run).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
NO_GPU_NOTE = "not measured: no GPU available"
STARTED = time.time()  # when the benchmark process imported this module; results record the wall time

if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

# Before mxnet: the package chooses MXNet's OpenMP thread count as it loads (one per physical core),
# so the benchmarks run with the threads every entry point of the package uses.
import deeplab_gluon  # noqa: E402

import mxnet as mx  # noqa: E402


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> List[str]:
    """The vector-instruction flags that decide which MKL-DNN kernels run (avx2, avx512*, vnni...)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def load_average() -> List[float]:
    """1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_description(contexts: Sequence[mx.Context] = (mx.cpu(),)) -> dict:
    """What the figures were measured on; stored in every results file."""
    features = mx.runtime.Features()
    num_gpus = mx.context.num_gpus()
    uses_gpu = any(ctx.device_type == "gpu" for ctx in contexts)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
        "python": platform.python_version(),
        "mxnet_version": mx.__version__,
        "mxnet_features_enabled": sorted(name for name, feature in features.items() if feature.enabled),
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS",
                                                            "MXNET_CPU_WORKER_NTHREADS", "MXNET_SUBGRAPH_BACKEND",
                                                            "MKL_NUM_THREADS")},
        "thread_choice": deeplab_gluon.cpu_threads.current_choice().as_dict(),
        "contexts": [str(ctx) for ctx in contexts],
        "gpu_used": uses_gpu,
        "gpus_visible": num_gpus,
        "gpu_note": None if uses_gpu else NO_GPU_NOTE,
        "load_average_at_start": load_average(),
    }


def other_busy_processes(threshold_percent: float = 20.0) -> List[str]:
    """Other processes using more than ``threshold_percent`` of a core right now (from ``ps``)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != os.getpid() and float(parts[1]) > threshold_percent:
            busy.append(f"{parts[0]} {parts[1]}% {parts[2][:100]}")
    return busy


def cpu_ticks() -> Tuple[int, int]:
    """(all, idle) clock ticks of all cores since boot, from /proc/stat's first line; idle includes iowait."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields[:8]), fields[3] + (fields[4] if len(fields) > 4 else 0)


def cpu_busy_fraction(interval_s: float = 2.0) -> Optional[float]:
    """Fraction of all cores busy over ``interval_s`` (from /proc/stat), while this process sleeps.

    Unlike the load average, which still remembers this process's own work of the last minutes,
    this says whether *other* processes are using the cores right now.
    """
    try:
        total0, idle0 = cpu_ticks()
        time.sleep(interval_s)
        total1, idle1 = cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def wait_for_quiet_machine(max_busy: float = 0.15, timeout_s: float = 600.0, poll_s: float = 10.0) -> dict:
    """Wait until other processes use less than ``max_busy`` of the cores (other jobs share them).

    Returns what was seen (busy fraction, load average, seconds waited, whether it got quiet) so
    the results file records the conditions; measuring goes ahead after ``timeout_s`` regardless,
    and the record says so.
    """
    start = time.time()
    while True:
        busy = cpu_busy_fraction()
        if busy is None or busy < max_busy:
            return {"quiet": True, "busy_fraction": busy, "load_average": load_average(),
                    "waited_s": round(time.time() - start, 1)}
        if time.time() - start > timeout_s:
            print(f"warning: other processes still use {busy:.0%} of the cores after {timeout_s:.0f} s; "
                  f"measuring anyway, figures may be low. Busy: {other_busy_processes()}", file=sys.stderr)
            return {"quiet": False, "busy_fraction": busy, "load_average": load_average(),
                    "waited_s": round(time.time() - start, 1), "busy_processes": other_busy_processes()}
        time.sleep(poll_s)


RESULT_MARKER = "RESULT_JSON "  # prefixes the line a worker subprocess prints its result on


def print_worker_result(result: dict) -> None:
    """Print a worker subprocess's result for :func:`run_worker` to find among its other output."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def run_worker(script: str, flag: str, spec: dict, env: Optional[dict] = None) -> dict:
    """Run ``python script flag '<spec as JSON>'`` in a fresh process (its own memory peak, its own
    MXNet settings) and return the result it printed with :func:`print_worker_result`."""
    done = subprocess.run([sys.executable, str(script), flag, json.dumps(spec)], capture_output=True, text=True,
                          env=env or os.environ.copy())
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError(f"worker {flag} {spec} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def describe_machine(machine: dict) -> str:
    """The top of a benchmark's output, from :func:`machine_description`: the machine, then MXNet's threads."""
    return (f"{machine['cpu_model']}, {machine['usable_cores']} cores, MXNet {machine['mxnet_version']}, "
            f"load {machine['load_average_at_start']}; GPU: {machine['gpu_note'] or 'used'}\n"
            f"{machine['thread_choice']['line']}")


def describe_quiet_check(check: dict) -> str:
    busy = check.get("busy_fraction")
    busy_text = "unknown" if busy is None else f"{busy:.0%}"
    return f"before timing: other processes used {busy_text} of the cores, load average {check['load_average']}"


class OtherCpuMeter:
    """How much of the cores *other* processes used while a block ran.

    ``(busy time of all cores - this process's CPU time) / (wall time x cores)``, from /proc/stat
    and ``os.times()``. A timed run during which another job took a real share of the cores is
    not a measurement of our code, so the timing helpers below redo it.
    """

    def __init__(self):
        self.others = None

    @staticmethod
    def _busy_s():
        total, idle = cpu_ticks()
        return (total - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_s():
        t = os.times()
        return t.user + t.system

    def __enter__(self):
        try:
            self._start = (time.perf_counter(), self._busy_s(), self._own_s())
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is None:
            return False
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        others = (self._busy_s() - busy0) - (self._own_s() - own0)
        # /proc/stat ticks every 10 ms: runs much shorter than that cannot be judged
        self.others = max(0.0, others) / (wall * cores) if wall > 0.05 else 0.0
        return False


MAX_OTHERS = 0.10  # a timed run is redone when other processes used more than 10% of the cores
RETRY_FACTOR = 3  # at most repeats x RETRY_FACTOR attempts; then the runs are kept and flagged


def summarize(times_s: Sequence[float], others: Sequence[float] = (), discarded: int = 0) -> dict:
    """Median, minimum, maximum and all samples (seconds), and how disturbed they were."""
    out = {"median_s": statistics.median(times_s), "min_s": min(times_s), "max_s": max(times_s),
           "samples_s": [round(t, 5) for t in times_s]}
    if others:
        out["others_busy_max"] = round(max(others), 3)
        out["discarded_disturbed_runs"] = discarded
    return out


def time_call(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
    """Time ``fn`` (which must block until its work is done) ``repeats`` times after ``warmup`` calls.

    A run during which other processes used more than ``MAX_OTHERS`` of the cores is discarded and
    redone after waiting for the machine to calm down (see :class:`OtherCpuMeter`): this is
    :func:`time_interleaved` with one function.
    """
    return time_interleaved({"fn": fn}, warmup, repeats)["fn"]


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, repeats: int,
                     max_others: Optional[float] = None) -> Dict[str, dict]:
    """Time several functions in rounds (one call of each per round) so that load from other
    processes, thermal state and the like affect every candidate alike rather than whichever
    happened to run during a busy minute. Every function gets ``warmup`` untimed calls first.
    A round in which any run was disturbed by other processes (more than ``max_others`` of the cores,
    default ``MAX_OTHERS``, measured by :class:`OtherCpuMeter`) is redone after waiting for the
    machine to calm down; ``max_others=float("inf")`` never redoes one (a smoke test, whose
    timings mean nothing, should not wait for a quiet machine)."""
    max_others = MAX_OTHERS if max_others is None else max_others
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    others: Dict[str, List[float]] = {name: [] for name in fns}
    discarded = 0
    for _ in range(repeats * RETRY_FACTOR):
        round_times, round_others = {}, {}
        for name, fn in fns.items():
            meter = OtherCpuMeter()
            with meter:
                start = time.perf_counter()
                fn()
                round_times[name] = time.perf_counter() - start
            round_others[name] = meter.others or 0.0
        if max(round_others.values()) > max_others and discarded < repeats * (RETRY_FACTOR - 1):
            discarded += 1
            wait_for_quiet_machine(timeout_s=120)
            continue
        for name in fns:
            samples[name].append(round_times[name])
            others[name].append(round_others[name])
        if len(samples[next(iter(fns))]) == repeats:
            break
    return {name: summarize(samples[name], others[name], discarded) for name in fns}


# ----------------------------------------------------------------------------------------------
# multiply-add counting from the graph


def count_macs(block: mx.gluon.HybridBlock, input_shape: Sequence[int], input_name: str = "data") -> dict:
    """Multiply-adds of every Convolution, Deconvolution and FullyConnected layer of ``block``.

    The block is traced into a symbol, shapes are inferred for ``input_shape`` and each layer
    contributes ``output elements x (weight elements per output channel)``: a KxK conv from C_in/groups
    channels costs ``K*K*C_in/groups`` MACs per output value, whatever its stride or dilation.
    Pooling, BatchNorm, element-wise ops and resizing are not counted (they are memory-bound and a
    small share of the arithmetic). Returns ``{"total": int, "by_op": {op: macs}, "layers": n,
    "by_layer": {node name: macs}}``; node names start with their block's prefix, so
    :func:`sum_by_prefix` splits the total by part of the network.
    """
    data = mx.sym.var(input_name)
    out = block(data)
    sym = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape_partial(**{input_name: tuple(input_shape)})
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    total, by_op, by_layer, layers = 0, {}, {}, 0
    for node in nodes:
        if node["op"] not in ("Convolution", "Deconvolution", "FullyConnected"):
            continue
        weight_name = nodes[node["inputs"][1][0]]["name"]
        weight, output = arg_shape.get(weight_name), out_shape.get(node["name"] + "_output")
        if not weight or not output:
            raise ValueError(f"cannot infer the shapes of {node['name']} for input {tuple(input_shape)}")
        per_output = _prod(weight[1:])
        if node["op"] == "Deconvolution":  # each input value scatters into C_out/groups x K x K outputs
            input_shape_node = out_shape.get(nodes[node["inputs"][0][0]]["name"] + "_output")
            macs = _prod(input_shape_node) * _prod(weight[1:])
        else:
            macs = _prod(output) * per_output
        total += macs
        by_op[node["op"]] = by_op.get(node["op"], 0) + macs
        by_layer[node["name"]] = int(macs)
        layers += 1
    return {"total": int(total), "by_op": by_op, "layers": layers, "by_layer": by_layer}


def count_params(block: mx.gluon.HybridBlock, input_shape: Sequence[int], input_name: str = "data") -> dict:
    """Learnable parameters of ``block`` (weights, biases, BatchNorm gamma/beta; not the running
    mean/variance), from the traced graph's inferred shapes: the block need not be initialised,
    and layers whose input channels are inferred get their real shapes. Parameters the forward
    pass does not use are not counted. Returns ``{"total": int, "by_name": {name: count}}``."""
    data = mx.sym.var(input_name)
    out = block(data)
    sym = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    arg_shapes, _, _ = sym.infer_shape_partial(**{input_name: tuple(input_shape)})
    by_name = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == input_name:
            continue
        if not shape or 0 in shape:
            raise ValueError(f"cannot infer the shape of {name} for input {tuple(input_shape)}")
        by_name[name] = _prod(shape)
    return {"total": int(sum(by_name.values())), "by_name": by_name}


def sum_by_prefix(values: Dict[str, int], prefixes: Dict[str, str], rest: str = "other") -> Dict[str, int]:
    """Add up ``{name: value}`` by the first of ``prefixes`` (``{part: name prefix}``) each name
    starts with, e.g. a network's MACs by ``{"backbone": net.backbone.prefix, ...}``; names with
    none of them go to ``rest``. Every part is in the result, 0 when nothing matched."""
    sums = {part: 0 for part in prefixes}
    for name, value in values.items():
        part = next((part for part, prefix in prefixes.items() if name.startswith(prefix)), rest)
        sums[part] = sums.get(part, 0) + value
    return sums


def _prod(values: Iterable[int]) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result


# ----------------------------------------------------------------------------------------------
# output


def format_table(rows: Sequence[dict], columns: Sequence[str], headers: Optional[Sequence[str]] = None) -> str:
    """A plain-text table of ``rows`` (dicts); floats are printed with 3 significant decimals."""
    headers = list(headers or columns)

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def write_results(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` (machine description added) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload.setdefault("machine", machine_description())
    payload["machine"]["load_average_at_end"] = load_average()
    payload["wall_s"] = round(time.time() - STARTED, 1)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    print(f"(benchmark wall time {payload['wall_s'] / 60:.1f} min)")
    return path


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
