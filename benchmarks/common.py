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
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import mxnet as mx

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
NO_GPU_NOTE = "not measured: no GPU available"

if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))


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
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS",
                                                            "MXNET_SUBGRAPH_BACKEND", "MKL_NUM_THREADS")},
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


def wait_for_quiet_machine(max_load: float = 0.7, timeout_s: float = 600.0, poll_s: float = 15.0) -> dict:
    """Wait until the 1-minute load average is below ``max_load`` (other jobs share the cores).

    Returns what was seen (load average, waited seconds, whether the machine got quiet) so the
    results file records the conditions; measuring goes ahead after ``timeout_s`` regardless,
    and the record says so.
    """
    start = time.time()
    while True:
        load = load_average()
        if load[0] < max_load:
            return {"quiet": True, "load_average": load, "waited_s": round(time.time() - start, 1)}
        if time.time() - start > timeout_s:
            print(f"warning: load average still {load} after {timeout_s:.0f} s; measuring anyway, "
                  f"figures may be low. Busy: {other_busy_processes()}", file=sys.stderr)
            return {"quiet": False, "load_average": load, "waited_s": round(time.time() - start, 1),
                    "busy_processes": other_busy_processes()}
        time.sleep(poll_s)


def summarize(times_s: Sequence[float]) -> dict:
    """Median, minimum, maximum and all samples (seconds)."""
    return {"median_s": statistics.median(times_s), "min_s": min(times_s), "max_s": max(times_s),
            "samples_s": [round(t, 5) for t in times_s]}


def time_call(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
    """Time ``fn`` (which must block until its work is done) ``repeats`` times after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return summarize(samples)


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, repeats: int) -> Dict[str, dict]:
    """Time several functions in rounds (one call of each per round) so that load from other
    processes, thermal state and the like affect every candidate alike rather than whichever
    happened to run during a busy minute. Every function gets ``warmup`` untimed calls first."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: summarize(values) for name, values in samples.items()}


# ----------------------------------------------------------------------------------------------
# multiply-add counting from the graph


def count_macs(block: mx.gluon.HybridBlock, input_shape: Sequence[int], input_name: str = "data") -> dict:
    """Multiply-adds of every Convolution, Deconvolution and FullyConnected layer of ``block``.

    The block is traced into a symbol, shapes are inferred for ``input_shape`` and each layer
    contributes ``output elements x (weight elements per output channel)``: a KxK conv from C_in/groups
    channels costs ``K*K*C_in/groups`` MACs per output value, whatever its stride or dilation.
    Pooling, BatchNorm, element-wise ops and resizing are not counted (they are memory-bound and a
    small share of the arithmetic). Returns ``{"total": int, "by_op": {op: macs}, "layers": n}``.
    """
    data = mx.sym.var(input_name)
    out = block(data)
    sym = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape_partial(**{input_name: tuple(input_shape)})
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    total, by_op, layers = 0, {}, 0
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
        layers += 1
    return {"total": int(total), "by_op": by_op, "layers": layers}


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
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    return path


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
