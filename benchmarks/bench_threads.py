"""What the package's thread choice does: inference time and CPU use against MXNet's own default.

One forward of DeepLabV3 ResNet-50-v2 ASPP, output stride 16, 513x513, batch 1, fp32, hybridized
(``static_alloc``), in a fresh process per setting:

* ``MXNet default``: mxnet imported before deeplab_gluon, so MXNet picks its threads itself (half
  the logical CPUs: it assumes two hyper-threads per core);
* ``package``: deeplab_gluon imported first, one OpenMP thread per usable physical core
  (``deeplab_gluon.cpu_threads``), with libgomp's default wait policy (threads spin between
  parallel regions);
* ``package, passive wait``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of
  spinning), which matters when other processes want the same cores;
* ``1 thread``: ``OMP_NUM_THREADS=1``.

Reports seconds per image (median, minimum), and process CPU time / wall time over a few more
forwards, which shows how many cores the forward kept busy (spinning threads count as busy). About 3 minutes on 2 cores; ``--quick``
uses 321x321 and 2 repeats. Results: ``benchmarks/results/threads.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SETTINGS = {  # name -> (import the package before mxnet, extra environment)
    "MXNet default": (False, {}),
    "package": (True, {}),
    "package, passive wait": (True, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread": (True, {"OMP_NUM_THREADS": "1"}),
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "DEEPLAB_GLUON_THREADS", "OMP_WAIT_POLICY")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-busy", type=float, default=0.15)
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--output", default="threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeats = 321, 2
    return args


def run_worker(spec: dict) -> dict:
    """One setting in this fresh process; the import order is the point, so imports happen here."""
    import time
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
    package_first, _ = SETTINGS[spec["setting"]]
    if package_first:
        import deeplab_gluon  # noqa: F401  (chooses the threads before mxnet loads)
    import mxnet as mx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common
    import model_builders
    from deeplab_gluon import cpu_threads

    mx.random.seed(0)
    net = model_builders.build_ours(50, "aspp", 16, ctx=mx.cpu())
    net.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, spec["size"], spec["size"]))
    timing = common.time_call(lambda: net(x).wait_to_read(), spec["warmup"], spec["repeats"])
    # CPU use over a few more forwards in a row (time_call may sleep between disturbed runs)
    cpu_start, wall_start = os.times(), time.perf_counter()
    for _ in range(max(2, spec["repeats"] // 2)):
        net(x).wait_to_read()
    cpu_end, wall_end = os.times(), time.perf_counter()
    cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    return {"timing": timing, "cpu_per_wall": cpu / (wall_end - wall_start),
            "thread_choice": cpu_threads.current_choice().as_dict(),
            "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES}}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        result = run_worker(json.loads(args.worker))
        import common  # after the worker's own imports

        common.print_worker_result(result)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    machine = common.machine_description()
    print(common.describe_machine(machine))
    rows = []
    for setting in args.settings:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        env.update(SETTINGS[setting][1])
        quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
        print(f"[{setting}] {common.describe_quiet_check(quiet)}", flush=True)
        spec = {"setting": setting, "size": args.size, "warmup": args.warmup, "repeats": args.repeats}
        result = common.run_worker(Path(__file__).resolve(), "--worker", spec, env)
        rows.append({"setting": setting, "threads": result["thread_choice"]["threads"],
                     "thread_source": result["thread_choice"]["source"], "s_per_image": result["timing"]["median_s"],
                     "s_per_image_min": result["timing"]["min_s"], "cpu_per_wall": result["cpu_per_wall"],
                     "timing": result["timing"], "thread_choice": result["thread_choice"],
                     "environment": result["environment"], "quiet_check": quiet})
    default = next((r for r in rows if r["setting"] == "MXNet default"), None)
    for row in rows:
        if default:
            row["speedup_vs_mxnet_default"] = default["s_per_image"] / row["s_per_image"]
    print(f"\nResNet-50-v2 ASPP OS16, {args.size}x{args.size}, batch 1, fp32 hybridized, cpu")
    print(common.format_table(rows, ["setting", "threads", "thread_source", "s_per_image", "s_per_image_min",
                                     "cpu_per_wall", "speedup_vs_mxnet_default"],
                              ["setting", "threads", "from", "s/image", "min s", "CPU/wall", "speed vs default"]))
    payload = {"benchmark": "threads",
               "command": "python benchmarks/bench_threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "settings": {"size": args.size, "warmup": args.warmup, "repeats": args.repeats, "quick": args.quick},
               "results": rows, "machine": machine}
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
