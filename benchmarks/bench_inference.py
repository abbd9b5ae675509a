"""Inference speed of DeepLabV3 (ours: ResNet-v2 + ASPP / Vortex) beside gluoncv's DeepLabV3.

For each model: images/s and ms/image at batch 1 on one image size (513x513 by default),
hybridized with ``static_alloc=True, static_shape=True``, on the current context (CPU here); the
multiply-add count of its convolution / dense layers read from the graph with inferred shapes, and
the GFLOP/s achieved (2 FLOPs per multiply-add); where the time goes (backbone vs head, timed as
separately hybridized blocks, and per operator type from ``mx.profiler``); and the ratio
ours / gluoncv at equal settings. gluoncv's DeepLabV3 only exists at output stride 8, so ratios are
given there; our output stride 16 models are listed without a gluoncv partner.

Models of the same depth and output stride are timed in interleaved rounds (one forward of each per
round), so load from other processes hits them alike. The JSON goes to
``benchmarks/results/inference.json``.

Defaults (a full run, about 10 minutes on 2 cores): ResNet-50 and -101, ASPP and Vortex, OS 16 and 8,
gluoncv at OS 8; 1 warm-up + 5 timed forwards per model, each round also timing the backbone and the
head alone; an operator profile of 1 forward per ResNet-50 model; then the OS 8 models (where gluoncv
is) with MKL-DNN operator fusion (``optimize_for(backend="MKLDNN")``) applied to both sides, 1 + 3
forwards.
``--quick``: ResNet-50 at OS 8 only, 1 + 3 forwards (fused 1 + 2).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (path set above)
import model_builders  # noqa: E402

import mxnet as mx  # noqa: E402

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ResNet-50, OS 8, 1 warm-up + 3 timed runs")
    parser.add_argument("--depths", type=int, nargs="+", default=[50, 101])
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"], choices=["aspp", "vortex"])
    parser.add_argument("--output-strides", type=int, nargs="+", default=[16, 8], choices=[8, 16, 32])
    parser.add_argument("--size", type=int, default=513, help="square input side (default 513)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fused-repeats", type=int, default=3, help="timed forwards of the MKL-DNN-fused variants")
    parser.add_argument("--no-gluoncv", action="store_true", help="only our models")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the backbone/head split")
    parser.add_argument("--no-profile", action="store_true", help="skip the mx.profiler operator breakdown")
    parser.add_argument("--no-fuse", action="store_true", help="skip the MKL-DNN-fused variants")
    parser.add_argument("--fuse-strides", type=int, nargs="+", default=[8],
                        help="output strides whose groups are also timed MKL-DNN-fused (default: 8, where gluoncv is)")
    parser.add_argument("--profile-depths", type=int, nargs="+", default=[50],
                        help="depths whose models get the operator profile (default: 50)")
    parser.add_argument("--profile-runs", type=int, default=1)
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="wait until other processes use less than this fraction of the cores")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine")
    parser.add_argument("--output", default="inference", help="results name: benchmarks/results/<name>.json")
    parser.add_argument("--profile-worker", help=argparse.SUPPRESS)  # internal: profile one model, print JSON
    args = parser.parse_args(argv)
    if args.quick:
        args.depths, args.output_strides, args.warmup, args.repeats, args.fused_repeats = [50], [8], 1, 3, 2
    return args


def first_output(out):
    """The logits, whether the network returns them alone or in a tuple/list (gluoncv)."""
    return out[0] if isinstance(out, (list, tuple)) else out


def make_runner(block, *inputs):
    """A call that runs ``block`` on ``inputs`` and blocks until the result exists."""
    def run():
        first_output(block(*inputs)).wait_to_read()
    return run


def profile_operators(run, runs: int) -> dict:
    """Milliseconds per forward spent in each operator type, from ``mx.profiler``'s aggregate stats.

    The wheel's ``mx.runtime.Features()`` lists PROFILER as disabled, but the built-in profiler
    works all the same and records every operator the engine runs (operator types, not node names,
    which is why the backbone/head split is timed separately). A hybridized graph runs its operators
    in bulk segments that the profiler sees as one entry, so this is called in a subprocess started
    with ``MXNET_EXEC_BULK_EXEC_INFERENCE=0`` (see :func:`profile_in_subprocess`).
    """
    run()
    # The profiler replaces its output file (and must never be pointed at /dev/null, which it
    # would delete and recreate as a regular file): give it a scratch file.
    scratch = tempfile.mkdtemp(prefix="bench_profile_")
    mx.profiler.set_config(profile_symbolic=True, profile_imperative=True, profile_memory=False,
                           profile_api=False, aggregate_stats=True, filename=os.path.join(scratch, "trace.json"))
    mx.profiler.dumps(reset=True)
    mx.profiler.set_state("run")
    for _ in range(runs):
        run()
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    stats = json.loads(mx.profiler.dumps(reset=True, format="json"))
    shutil.rmtree(scratch, ignore_errors=True)
    operators = stats.get("Time", {}).get("operator", {})
    per_run = {name: round(v["Total"] / runs, 3) for name, v in operators.items()
               if name not in ("WaitForVar", "DeleteVariable")}
    return dict(sorted(per_run.items(), key=lambda kv: -kv[1]))


def profile_in_subprocess(candidate, runs: int) -> dict:
    """Operator profile of one candidate, in a fresh process with bulk execution off."""
    spec = {"kind": candidate.kind, "depth": candidate.depth, "head": candidate.head,
            "output_stride": candidate.output_stride, "size": candidate.size, "runs": runs}
    env = dict(os.environ, MXNET_EXEC_BULK_EXEC_INFERENCE="0")
    return common.run_worker(Path(__file__).resolve(), "--profile-worker", spec, env)


def profile_worker(spec: dict) -> dict:
    ctx = mx.cpu()
    size = spec["size"]
    if spec["kind"] == "ours":
        net = model_builders.build_ours(spec["depth"], spec["head"], spec["output_stride"], ctx=ctx)
    else:
        net = model_builders.build_gluoncv(spec["depth"], (size, size), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size), ctx=ctx)
    return profile_operators(make_runner(net, x), spec["runs"])


class Candidate:
    """One network under test, with its input, MAC count and (optionally) its backbone/head parts."""

    def __init__(self, name, kind, depth, head, output_stride, net, size, ctx):
        self.name, self.kind, self.depth, self.head, self.output_stride = name, kind, depth, head, output_stride
        self.net, self.size, self.ctx = net, size, ctx
        self.x = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size), ctx=ctx)
        self.macs = common.count_macs(net, (1, 3, size, size))["total"]
        self.backbone_macs = common.count_macs(model_builders.BackbonePart(net, kind), (1, 3, size, size))["total"]
        self.parts = self.features = None

    def make_parts(self):
        """Backbone and head as two blocks; must be made before hybridizing (they re-hybridize the net)."""
        backbone = model_builders.BackbonePart(self.net, self.kind)
        head = model_builders.HeadPart(self.net, self.kind)
        self.parts = (backbone, head)

    def hybridize(self):
        flags = dict(static_alloc=True, static_shape=True)
        if self.parts:
            for part in self.parts:
                part.hybridize(**flags)
        self.net.hybridize(**flags)  # last: the parts' hybridize() resets the shared children
        if self.parts:
            backbone, head = self.parts
            self.features = backbone(self.x)
            self.features.wait_to_read()

    def release(self):
        """Drop the network and its buffers; keep the name and counts for the tables."""
        self.net = self.parts = self.x = self.features = None

    def runners(self):
        out = {"full": make_runner(self.net, self.x)}
        if self.parts:
            backbone, head = self.parts
            out["backbone"] = make_runner(backbone, self.x)
            out["head"] = make_runner(head, self.features, self.x)
        return out


def groups_of(args):
    """(depth, output stride, [(kind, head), ...]): the models timed together in one group."""
    for depth in args.depths:
        for output_stride in args.output_strides:
            members = [("ours", head) for head in args.heads]
            if not args.no_gluoncv and output_stride in model_builders.GLUONCV_OUTPUT_STRIDES:
                members.append(("gluoncv", "aspp"))
            yield depth, output_stride, members


def build_candidate(kind, depth, head, output_stride, size, ctx):
    if kind == "ours":
        net = model_builders.build_ours(depth, head, output_stride, ctx=ctx)
        name = f"ours R{depth}-v2 {head} OS{output_stride}"
    else:
        net = model_builders.build_gluoncv(depth, (size, size), ctx=ctx)
        name = f"gluoncv R{depth}-v1s aspp OS{output_stride}"
    return Candidate(name, kind, depth, head, output_stride, net, size, ctx)


def measure(members, warmup, repeats, label):
    """Time the full network (and backbone/head when split) of each member in interleaved rounds."""
    print(f"[{label}] timing {', '.join(c.name for c in members)}", flush=True)
    runs = {f"{c.name}|{part}": fn for c in members for part, fn in c.runners().items()}
    timings = common.time_interleaved(runs, warmup, repeats)
    load = common.load_average()
    return {c.name: {**{part: timings[f"{c.name}|{part}"] for part in c.runners()}, "load_average_after": load}
            for c in members}


def rows_for(candidates, timings, profile=None):
    rows = []
    for c in candidates:
        t = timings[c.name]
        full = t["full"]["median_s"]
        load = t.pop("load_average_after", None)
        row = {"model": c.name, "kind": c.kind, "depth": c.depth, "head": c.head, "output_stride": c.output_stride,
               "size": c.size, "batch": 1, "gmacs": c.macs / 1e9, "backbone_gmacs": c.backbone_macs / 1e9,
               "ms_per_image": 1000 * full, "ms_per_image_min": 1000 * t["full"]["min_s"],
               "images_per_s": 1 / full, "gflops_per_s": 2 * c.macs / full / 1e9, "timing": t,
               "load_average_after": load}
        if "backbone" in t:
            backbone, head = t["backbone"]["median_s"], t["head"]["median_s"]
            row.update(backbone_ms=1000 * backbone, head_ms=1000 * head,
                       head_share=head / (backbone + head),
                       backbone_gflops_per_s=2 * c.backbone_macs / backbone / 1e9,
                       head_gflops_per_s=2 * (c.macs - c.backbone_macs) / head / 1e9)
        if profile and c.name in profile:
            row["operator_ms"] = profile[c.name]
        rows.append(row)
    # ours / gluoncv at the same depth and stride (images/s ratio, > 1 means ours is faster)
    gluoncv = {(r["depth"], r["output_stride"]): r for r in rows if r["kind"] == "gluoncv"}
    aspp = {(r["depth"], r["output_stride"]): r for r in rows if r["kind"] == "ours" and r["head"] == "aspp"}
    for r in rows:
        partner = gluoncv.get((r["depth"], r["output_stride"]))
        if r["kind"] == "ours" and partner:
            r["ratio_vs_gluoncv"] = r["images_per_s"] / partner["images_per_s"]
            r["ratio_vs_gluoncv_min"] = partner["ms_per_image_min"] / r["ms_per_image_min"]
        base = aspp.get((r["depth"], r["output_stride"]))
        if r["kind"] == "ours" and r["head"] == "vortex" and base:
            r["vortex_overhead"] = r["ms_per_image"] / base["ms_per_image"] - 1
            if "head_ms" in r and "head_ms" in base:
                r["vortex_head_overhead"] = r["head_ms"] / base["head_ms"] - 1
    return rows


def print_rows(title, rows):
    print(f"\n{title}")
    print(common.format_table(rows, ["model", "gmacs", "ms_per_image", "ms_per_image_min", "images_per_s",
                                     "gflops_per_s", "ratio_vs_gluoncv", "vortex_overhead"],
                              ["model", "GMACs", "ms/img", "min ms", "img/s", "GFLOP/s", "ours/gluoncv",
                               "vortex vs aspp"]))
    if any("backbone_ms" in r for r in rows):
        print("\nwhere the time goes (backbone and head+upsampling timed as separate hybridized blocks)")
        print(common.format_table(rows, ["model", "backbone_gmacs", "backbone_ms", "backbone_gflops_per_s",
                                         "head_ms", "head_gflops_per_s", "head_share", "vortex_head_overhead"],
                                  ["model", "backbone GMACs", "backbone ms", "GFLOP/s", "head ms", "GFLOP/s",
                                   "head share", "vortex head vs aspp"]))
    if any("operator_ms" in r for r in rows):
        print("\nmx.profiler, ms per forward by operator type (top 7; bulk execution off, profiler on: "
              "slower than the timings above)")
        for r in rows:
            top = list(r["operator_ms"].items())[:7]
            print(f"  {r['model']:<30} " + ", ".join(f"{k} {v:.0f}" for k, v in top))


def fuse(candidates):
    """Apply MKL-DNN operator fusion (conv+BN+ReLU+sum into one kernel) to every network alike."""
    for c in candidates:
        c.net.optimize_for(c.x, backend="MKLDNN", static_alloc=True, static_shape=True)
        c.parts = None


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.profile_worker:
        common.print_worker_result(profile_worker(json.loads(args.profile_worker)))
        return
    ctx = mx.cpu()
    machine = common.machine_description([ctx])
    print(common.describe_machine(machine))
    mx.random.seed(0)
    # One group (same depth and stride) at a time: its models are timed against each other in
    # interleaved rounds, then freed, so at most one group's networks and buffers are in memory.
    candidates, timings, fused_timings, quiet_checks = [], {}, {}, []
    for depth, output_stride, members in groups_of(args):
        group = [build_candidate(kind, depth, head, output_stride, args.size, ctx) for kind, head in members]
        for c in group:
            if not args.no_breakdown:
                c.make_parts()
            c.hybridize()
        quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
        quiet_checks.append({"group": f"R{depth} OS{output_stride}", **quiet})
        print(common.describe_quiet_check(quiet), flush=True)
        timings.update(measure(group, args.warmup, args.repeats, "hybridized"))
        if not args.no_fuse and output_stride in args.fuse_strides:
            fuse(group)
            fused_timings.update(measure(group, args.warmup, args.fused_repeats, "MKL-DNN fused"))
        for c in group:
            c.release()
        candidates += group
    profile = None
    if not args.no_profile:
        print("profiling operators (one subprocess per model)", flush=True)
        profile = {c.name: profile_in_subprocess(c, args.profile_runs) for c in candidates
                   if c.depth in args.profile_depths}
    rows = rows_for(candidates, timings, profile)
    print_rows(f"inference, {args.size}x{args.size}, batch 1, hybridize(static_alloc, static_shape), {ctx}", rows)
    fused_rows = None
    if fused_timings:
        fused_rows = rows_for(candidates, fused_timings)
        print_rows("the same with optimize_for(backend='MKLDNN') on both sides", fused_rows)

    payload = {
        "benchmark": "inference",
        "settings": {"size": args.size, "batch": 1, "warmup": args.warmup, "repeats": args.repeats,
                     "fused_repeats": args.fused_repeats, "profile_runs": args.profile_runs,
                     "hybridize": {"static_alloc": True, "static_shape": True}, "context": str(ctx),
                     "timing": "interleaved rounds within each (depth, output stride) group; median and min",
                     "macs": "Convolution/FullyConnected layers only, from inferred shapes; GFLOP/s = 2*MACs/time",
                     "gluoncv": "resnet v1s backbone, output stride 8 only (dilated=True is hard-coded), aux=False",
                     "quick": args.quick},
        "quiet_checks": quiet_checks,
        "gpu": common.NO_GPU_NOTE if ctx.device_type != "gpu" else None,
        "results": rows,
        "results_mkldnn_fused": fused_rows,
        "machine": machine,
    }
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
