"""Ours against gluoncv as each runs out of the box, and at equal threads: inference and training.

A gluoncv user imports it and runs: MXNet then takes its own thread count (half the logical CPUs,
one thread on a 2-core machine without SMT). This package chooses one thread per physical core
before MXNet loads, and evaluate / predict run the oneDNN-fused fp32 network. Both are measured as
shipped and, to separate the thread choice from the rest, gluoncv also at the package's thread
count. One fresh process per row (a process's thread count is fixed when MXNet loads):

* inference: ResNet-50 DeepLabV3 ASPP at output stride 8 (the only stride gluoncv's has), 513x513,
  batch 1: ours as evaluate/predict run it (``precision.optimize_for_inference``, fp32), ours plain
  hybridized, gluoncv ``get_deeplab('pascal_voc', 'resnet50')`` hybridized (``static_alloc``);
* training: one SGD step (forward, loss, backward, update), crop 321, batch 4, the same models
  (ours: ``SegmentationTrainer.train_step``; gluoncv: its ``MixSoftmaxCrossEntropyLoss`` and a
  ``gluon.Trainer``), as in ``bench_train.py``.

Random weights and inputs (speed does not depend on them). About 10 minutes on 2 cores; ``--quick``
uses 193x193 inputs, crop 97 and 2 repeats (a smoke test). Results: ``benchmarks/results/defaults.json``.
"""
from __future__ import annotations

import json
import sys

# A gluoncv user's process: mxnet loads before this package can choose, so MXNet keeps its own default.
if "--worker" in sys.argv and json.loads(sys.argv[-1]).get("threads") == "mxnet default":
    import mxnet  # noqa: F401

import argparse  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (imports deeplab_gluon, which chooses the threads unless mxnet is loaded)
import model_builders  # noqa: E402

import mxnet as mx  # noqa: E402

ROWS = [  # (task, model, threads)
    ("inference", "ours fused", "package"),
    ("inference", "ours plain", "package"),
    ("inference", "gluoncv", "mxnet default"),
    ("inference", "gluoncv", "package"),
    ("training", "ours", "package"),
    ("training", "gluoncv", "mxnet default"),
    ("training", "gluoncv", "package"),
]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "DEEPLAB_GLUON_THREADS")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats: checks the script")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=513, help="inference input side")
    parser.add_argument("--crop", type=int, default=321, help="training crop side")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls (fused fp32 builds its executor on the 2nd)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--max-busy", type=float, default=0.15)
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--output", default="defaults")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one row, print JSON
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.crop, args.repeats, args.train_repeats, args.warmup = 193, 97, 2, 2, 2
    return args


def inference_call(spec: dict):
    """A function running one forward of the row's network on a fixed random image, to completion."""
    from deeplab_gluon.precision import optimize_for_inference

    size, ctx = spec["size"], mx.cpu()
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, size, size), ctx=ctx)
    if spec["model"] == "gluoncv":
        net = model_builders.build_gluoncv(spec["depth"], (size, size), ctx=ctx)
        net.hybridize(static_alloc=True)
        return lambda: net(x)[0].wait_to_read()
    net = model_builders.build_ours(spec["depth"], "aspp", 8, ctx=ctx)
    if spec["model"] == "ours fused":
        prepared = optimize_for_inference(net, "fp32", ctx)
        return lambda: prepared(x).wait_to_read()
    net.hybridize(static_alloc=True)
    return lambda: net(x).wait_to_read()


def training_call(spec: dict):
    """A function running one SGD step of the row's network on a fixed random batch, to completion."""
    import bench_train

    ctx = mx.cpu()
    if spec["model"] == "gluoncv":
        _, step, _ = bench_train.make_gluoncv_step(spec["depth"], spec["crop"], ctx)
    else:
        _, step, _ = bench_train.make_ours_step("aspp", 8, spec["depth"], ctx)
    images, labels = bench_train.synthetic_batch(spec["batch"], spec["crop"], model_builders.NUM_CLASSES, ctx)

    def one_step():
        step(images, labels)
        mx.nd.waitall()

    return one_step


def run_worker(spec: dict) -> dict:
    from deeplab_gluon import cpu_threads

    warnings.filterwarnings("ignore")
    mx.random.seed(0)
    call = inference_call(spec) if spec["task"] == "inference" else training_call(spec)
    repeats = spec["repeats"] if spec["task"] == "inference" else spec["train_repeats"]
    return {"timing": common.time_call(call, spec["warmup"] if spec["task"] == "inference" else 1, repeats),
            "thread_choice": cpu_threads.current_choice().as_dict()}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        common.print_worker_result(run_worker(json.loads(args.worker)))
        return
    machine = common.machine_description()
    print(common.describe_machine(machine))
    rows = []
    for task, model, threads in ROWS:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        spec = {"task": task, "model": model, "threads": threads, "depth": args.depth, "size": args.size,
                "crop": args.crop, "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats,
                "train_repeats": args.train_repeats}
        quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
        print(f"[{task}: {model}, {threads} threads] {common.describe_quiet_check(quiet)}", flush=True)
        result = common.run_worker(Path(__file__).resolve(), "--worker", spec, env)
        seconds = result["timing"]["median_s"]
        rows.append({"task": task, "model": model, "threads_setting": threads,
                     "threads": result["thread_choice"]["threads"], "thread_source": result["thread_choice"]["source"],
                     "seconds": seconds, "seconds_min": result["timing"]["min_s"],
                     "images_per_s": (1 if task == "inference" else args.batch) / seconds,
                     "timing": result["timing"], "thread_choice": result["thread_choice"], "quiet_check": quiet})
    for task in ("inference", "training"):
        ours = next(r for r in rows if r["task"] == task and r["model"].startswith("ours"))
        for row in rows:
            if row["task"] == task:
                row["ours_speedup"] = row["seconds"] / ours["seconds"]  # > 1: ours (as shipped) is faster
    print(f"\nResNet-{args.depth} DeepLabV3 ASPP OS8; inference {args.size}x{args.size} batch 1, training crop "
          f"{args.crop} batch {args.batch}; ours' speed-up = that row's time / ours' time")
    print(common.format_table(rows, ["task", "model", "threads_setting", "threads", "seconds", "seconds_min",
                                     "images_per_s", "ours_speedup"],
                              ["task", "model", "threads", "n", "s (median)", "s (min)", "img/s", "ours' speed-up"]))
    payload = {"benchmark": "defaults",
               "command": "python benchmarks/bench_defaults.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "settings": {k: v for k, v in vars(args).items() if k != "worker"}, "results": rows,
               "gpu": common.NO_GPU_NOTE, "machine": machine}
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
