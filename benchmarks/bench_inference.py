"""Inference speed of DeepLabV3 / DeepLabV3+ (ours: ResNet, MobileNetV2, Xception-65; ASPP / Vortex) beside gluoncv's.

For each model: images/s and ms/image at batch 1 on one image size (513x513 by default),
hybridized with ``static_alloc=True, static_shape=True``, on the current context (CPU here); the
multiply-add count of its convolution / dense layers read from the graph with inferred shapes, and
the GFLOP/s achieved (2 FLOPs per multiply-add); where the time goes (backbone vs head + decoder,
timed as separately hybridized blocks, and per operator type from ``mx.profiler``); the ratio
ours / gluoncv where gluoncv has the same model, Vortex's cost over ASPP and the decoder's cost over
DeepLabV3.

gluoncv 0.10.5 has DeepLabV3 on ResNet-v1s (``get_deeplab``) and DeepLabV3+ on Xception-65
(``get_deeplab_plus``), both at output stride 8 only; no MobileNetV2 DeepLab, no Vortex, no
ResNet DeepLabV3+. So ratios are given at OS 8 against: gluoncv R50/R101-v1s DeepLabV3 (our
ResNet-v2 models, and our ResNet-v1s ASPP model, the same network as gluoncv's but for one 3x3
conv in gluoncv's head), and gluoncv's Xception-65 DeepLabV3+ (our Xception-65 DeepLabV3+, which
differs in the decoder's low-level projection, 1x1 here, 3x3 there). MobileNetV2 and the ResNet
DeepLabV3+ rows have no gluoncv partner.

Models of one group (same backbone family, depth and output stride) are timed in interleaved rounds
(one forward of each per round), so load from other processes hits them alike. The JSON goes to
``benchmarks/results/inference.json``.

Groups (``--families``, default all):

- ``resnet``: for each ``--depths`` (50, 101) and ``--output-strides`` (16, 8): ResNet-v2 with each
  head, without and with the decoder (``--decoders 0 1``); at OS 8 also ResNet-v1s ASPP and gluoncv.
- ``mobilenet``: MobileNetV2 with each head, without and with the decoder, at each output stride.
- ``xception``: Xception-65 DeepLabV3+ with each head at each output stride (the decoder is how
  Xception-65 is published; ``--decoders 0`` alone gives DeepLabV3); at OS 8 also gluoncv's.

Each model gets 1 warm-up + 5 timed forwards, each round also timing the backbone and the head
alone; an operator profile of 1 forward per ResNet-50 model; then the OS 8 groups with MKL-DNN
operator fusion (``optimize_for(backend="MKLDNN")``) applied to every model alike, 1 + 3 forwards.
The ResNet groups alone took about 10 minutes on 2 cores before the decoder and v1s rows; the full
default run is about three times that (an estimate from the multiply-adds, not measured).

``--quick``: a smoke test of every row kind (all families, both heads, with and without the
decoder, gluoncv's partners, the breakdown, the profile of the ResNet-50 rows and the fused pass) at
a tiny size (97x97) with ResNet-50 only, 1 + 2 forwards, without waiting for a quiet machine; it
writes ``benchmarks/results/inference_quick.json``, never the real figures. Its timings mean nothing.
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

FAMILIES = ("resnet", "mobilenet", "xception")
QUICK_SIZE = 97  # odd and not a multiple of 8, like 513: exercises the size fixes of gluoncv's models

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: every row kind at 97x97, ResNet-50 only, 1 warm-up + 2 timed runs, "
                             "no waiting for a quiet machine; writes results/inference_quick.json")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES),
                        help="groups of models to time (default: all)")
    parser.add_argument("--depths", type=int, nargs="+", default=[50, 101], help="ResNet depths (resnet family)")
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"], choices=["aspp", "vortex"])
    parser.add_argument("--decoders", type=int, nargs="+", default=[0, 1], choices=[0, 1],
                        help="0: DeepLabV3, 1: DeepLabV3+ (default both)")
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
                        help="ResNet depths whose models get the operator profile (default: 50)")
    parser.add_argument("--profile-runs", type=int, default=1)
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="wait until other processes use less than this fraction of the cores")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine")
    parser.add_argument("--output", default=None,
                        help="results name: benchmarks/results/<name>.json (default inference, inference_quick)")
    parser.add_argument("--profile-worker", help=argparse.SUPPRESS)  # internal: profile one model, print JSON
    args = parser.parse_args(argv)
    args.max_others = None  # common.MAX_OTHERS: disturbed rounds are redone
    if args.quick:
        args.depths, args.size, args.warmup, args.repeats, args.fused_repeats = [50], QUICK_SIZE, 1, 2, 1
        args.max_wait, args.max_others = 0, float("inf")  # its timings mean nothing: never wait
    if args.output is None:
        args.output = "inference_quick" if args.quick else "inference"
    return args


def all_outputs(out):
    """A block's outputs as a tuple: the logits alone, gluoncv's (logits,), or a DeepLabV3+
    backbone part's (low-level features, features)."""
    return tuple(out) if isinstance(out, (list, tuple)) else (out,)


def make_runner(block, *inputs):
    """A call that runs ``block`` on ``inputs`` and blocks until every output exists.

    Every one: MXNet runs asynchronously, and waiting for the first output of a DeepLabV3+ backbone
    (the stride-4 features) alone would stop the clock while the rest of the backbone still runs.
    """
    def run():
        for out in all_outputs(block(*inputs)):
            out.wait_to_read()
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
    spec = {"member": candidate.member, "size": candidate.size, "runs": runs}
    env = dict(os.environ, MXNET_EXEC_BULK_EXEC_INFERENCE="0")
    return common.run_worker(Path(__file__).resolve(), "--profile-worker", spec, env)


def profile_worker(spec: dict) -> dict:
    ctx = mx.cpu()
    size = spec["size"]
    net = build_net(spec["member"], size, ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size), ctx=ctx)
    return profile_operators(make_runner(net, x), spec["runs"])


def member(kind, backbone, head, decoder, output_stride):
    """One network of a group: ``kind`` "ours" or "gluoncv", a registry backbone name (gluoncv's
    networks are named by the same backbone: ``resnet50_v1s``, ``xception65``)."""
    return {"kind": kind, "backbone": backbone, "head": head, "decoder": bool(decoder),
            "output_stride": output_stride}


def backbone_label(backbone: str) -> str:
    """``resnet50_v2`` -> ``R50-v2``, ``mobilenetv2_1.0`` -> ``MobileNetV2``, ``xception65`` -> ``Xception-65``."""
    if backbone.startswith("resnet"):
        depth, variant = backbone[len("resnet"):].split("_")
        return f"R{depth}-{variant}"
    return {"mobilenetv2_1.0": "MobileNetV2", "xception65": "Xception-65"}[backbone]


def architecture(backbone: str) -> str:
    """What ours and gluoncv's must share to be compared: the depth of a ResNet (v2 and v1s alike,
    as before), else the backbone."""
    return backbone_label(backbone).split("-v")[0]


def model_name(m: dict) -> str:
    """``ours R50-v2 aspp OS16``, ``ours MobileNetV2 vortex+dec OS8``, ``gluoncv Xception-65 aspp+dec OS8``."""
    return (f"{m['kind']} {backbone_label(m['backbone'])} {m['head']}{'+dec' if m['decoder'] else ''} "
            f"OS{m['output_stride']}")


def build_net(m: dict, size: int, ctx):
    if m["kind"] == "ours":
        return model_builders.build_model_named(m["backbone"], m["head"], m["output_stride"], m["decoder"], ctx=ctx)
    if m["decoder"]:
        return model_builders.build_gluoncv_plus((size, size), ctx=ctx)
    return model_builders.build_gluoncv(int(architecture(m["backbone"])[1:]), (size, size), ctx=ctx)


class Candidate:
    """One network under test, with its input, MAC count and (optionally) its backbone/head parts."""

    def __init__(self, m: dict, size, ctx):
        self.member, self.kind, self.backbone = m, m["kind"], m["backbone"]
        self.head, self.decoder, self.output_stride = m["head"], m["decoder"], m["output_stride"]
        self.name, self.arch = model_name(m), architecture(m["backbone"])
        self.depth = int(self.arch[1:]) if self.arch.startswith("R") else None
        self.net, self.size, self.ctx = build_net(m, size, ctx), size, ctx
        self.x = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size), ctx=ctx)
        self.macs = common.count_macs(self.net, (1, 3, size, size))["total"]
        self.backbone_macs = common.count_macs(model_builders.BackbonePart(self.net, self.kind),
                                               (1, 3, size, size))["total"]
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
            features = backbone(self.x)  # the features, or (low-level, features) for DeepLabV3+
            self.features = all_outputs(features)
            for f in self.features:
                f.wait_to_read()

    def release(self):
        """Drop the network and its buffers; keep the name and counts for the tables."""
        self.net = self.parts = self.x = self.features = None

    def runners(self):
        out = {"full": make_runner(self.net, self.x)}
        if self.parts:
            backbone, head = self.parts
            out["backbone"] = make_runner(backbone, self.x)
            out["head"] = make_runner(head, *self.features, self.x)
        return out


def groups_of(args):
    """(label, [member, ...]): the models timed together in one group (see the module docstring)."""
    heads, decoders = args.heads, sorted(set(args.decoders))
    for family in args.families:
        for output_stride in args.output_strides:
            gluoncv_here = not args.no_gluoncv and output_stride in model_builders.GLUONCV_OUTPUT_STRIDES
            if family == "resnet":
                for depth in args.depths:
                    members = [member("ours", f"resnet{depth}_v2", head, decoder, output_stride)
                               for decoder in decoders for head in heads]
                    if gluoncv_here:  # gluoncv's get_deeplab: v1b below 50 layers, v1s from 50
                        same = f"resnet{depth}_{'v1s' if depth >= 50 else 'v1b'}"
                        members += [member("ours", same, "aspp", False, output_stride),
                                    member("gluoncv", same, "aspp", False, output_stride)]
                    yield f"R{depth} OS{output_stride}", members
            elif family == "mobilenet":
                yield f"MobileNetV2 OS{output_stride}", [member("ours", "mobilenetv2_1.0", head, decoder, output_stride)
                                                         for decoder in decoders for head in heads]
            elif family == "xception":
                decoder = 1 in decoders  # DeepLabV3+ is how Xception-65 is published (and gluoncv's)
                members = [member("ours", "xception65", head, decoder, output_stride) for head in heads]
                if gluoncv_here and decoder:
                    members.append(member("gluoncv", "xception65", "aspp", True, output_stride))
                yield f"Xception-65 OS{output_stride}", members


def measure(members, warmup, repeats, label, max_others=None):
    """Time the full network (and backbone/head when split) of each member in interleaved rounds."""
    print(f"[{label}] timing {', '.join(c.name for c in members)}", flush=True)
    runs = {f"{c.name}|{part}": fn for c in members for part, fn in c.runners().items()}
    timings = common.time_interleaved(runs, warmup, repeats, max_others=max_others)
    load = common.load_average()
    return {c.name: {**{part: timings[f"{c.name}|{part}"] for part in c.runners()}, "load_average_after": load}
            for c in members}


def rows_for(candidates, timings, profile=None):
    rows = []
    for c in candidates:
        t = dict(timings[c.name])
        full = t["full"]["median_s"]
        load = t.pop("load_average_after", None)
        row = {"model": c.name, "kind": c.kind, "backbone": c.backbone, "arch": c.arch, "depth": c.depth,
               "head": c.head, "decoder": c.decoder, "output_stride": c.output_stride,
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
    # ours / gluoncv with the same architecture, decoder and stride (images/s ratio, > 1: ours is faster)
    gluoncv = {(r["arch"], r["decoder"], r["output_stride"]): r for r in rows if r["kind"] == "gluoncv"}
    ours = {(r["backbone"], r["head"], r["decoder"], r["output_stride"]): r for r in rows if r["kind"] == "ours"}
    for r in rows:
        if r["kind"] != "ours":
            continue
        partner = gluoncv.get((r["arch"], r["decoder"], r["output_stride"]))
        if partner:
            r["ratio_vs_gluoncv"] = r["images_per_s"] / partner["images_per_s"]
            r["ratio_vs_gluoncv_min"] = partner["ms_per_image_min"] / r["ms_per_image_min"]
        base = ours.get((r["backbone"], "aspp", r["decoder"], r["output_stride"]))
        if r["head"] == "vortex" and base:
            r["vortex_overhead"] = r["ms_per_image"] / base["ms_per_image"] - 1
            if "head_ms" in r and "head_ms" in base:
                r["vortex_head_overhead"] = r["head_ms"] / base["head_ms"] - 1
        without = ours.get((r["backbone"], r["head"], False, r["output_stride"]))
        if r["decoder"] and without:
            r["decoder_overhead"] = r["ms_per_image"] / without["ms_per_image"] - 1
    return rows


def print_rows(title, rows):
    print(f"\n{title}")
    print(common.format_table(rows, ["model", "gmacs", "ms_per_image", "ms_per_image_min", "images_per_s",
                                     "gflops_per_s", "ratio_vs_gluoncv", "vortex_overhead", "decoder_overhead"],
                              ["model", "GMACs", "ms/img", "min ms", "img/s", "GFLOP/s", "ours/gluoncv",
                               "vortex vs aspp", "decoder vs V3"]))
    if any("backbone_ms" in r for r in rows):
        print("\nwhere the time goes (backbone and head+decoder+upsampling timed as separate hybridized blocks)")
        print(common.format_table(rows, ["model", "backbone_gmacs", "backbone_ms", "backbone_gflops_per_s",
                                         "head_ms", "head_gflops_per_s", "head_share", "vortex_head_overhead"],
                                  ["model", "backbone GMACs", "backbone ms", "GFLOP/s", "head ms", "GFLOP/s",
                                   "head share", "vortex head vs aspp"]))
    if any("operator_ms" in r for r in rows):
        print("\nmx.profiler, ms per forward by operator type (top 7; bulk execution off, profiler on: "
              "slower than the timings above)")
        for r in (r for r in rows if "operator_ms" in r):
            top = list(r["operator_ms"].items())[:7]
            print(f"  {r['model']:<38} " + ", ".join(f"{k} {v:.0f}" for k, v in top))


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
    # One group (same family, depth and stride) at a time: its models are timed against each other
    # in interleaved rounds, then freed, so at most one group's networks and buffers are in memory.
    candidates, timings, fused_timings, quiet_checks = [], {}, {}, []
    for label, members in groups_of(args):
        group = [Candidate(m, args.size, ctx) for m in members]
        for c in group:
            if not args.no_breakdown:
                c.make_parts()
            c.hybridize()
        quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
        quiet_checks.append({"group": label, **quiet})
        print(common.describe_quiet_check(quiet), flush=True)
        timings.update(measure(group, args.warmup, args.repeats, f"{label} hybridized", args.max_others))
        if not args.no_fuse and group[0].output_stride in args.fuse_strides:
            fuse(group)
            fused_timings.update(measure(group, args.warmup, args.fused_repeats, f"{label} MKL-DNN fused",
                                         args.max_others))
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
        fused_rows = rows_for([c for c in candidates if c.name in fused_timings], fused_timings)
        print_rows("the same with optimize_for(backend='MKLDNN') on every model", fused_rows)

    payload = {
        "benchmark": "inference",
        "settings": {"size": args.size, "batch": 1, "warmup": args.warmup, "repeats": args.repeats,
                     "fused_repeats": args.fused_repeats, "profile_runs": args.profile_runs,
                     "hybridize": {"static_alloc": True, "static_shape": True}, "context": str(ctx),
                     "families": args.families, "depths": args.depths, "heads": args.heads,
                     "decoders": args.decoders, "output_strides": args.output_strides,
                     "timing": "interleaved rounds within each (family, depth, output stride) group; median and min",
                     "macs": "Convolution/FullyConnected layers only, from inferred shapes; GFLOP/s = 2*MACs/time",
                     "gluoncv": "get_deeplab (resnet v1s; v1b below 50 layers) and get_deeplab_plus (xception), "
                                "output stride 8 only (hard-coded), aux=False",
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
