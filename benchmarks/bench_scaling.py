"""How inference time grows with the input size and the output stride (ours, ResNet-50-v2, both heads).

Two sweeps, batch 1, hybridized with ``static_alloc=True, static_shape=True``:

- input side 257, 321, 513, 769 at output stride 16;
- output stride 8, 16, 32 at 513x513.

Per point: ms/image (median and min), the multiply-adds of the conv layers and the achieved GFLOP/s.
ASPP and Vortex are timed in interleaved rounds at every point. Writes
``benchmarks/results/scaling.json`` and the plot ``benchmarks/results/scaling.png``.

Defaults (about 3-5 minutes on 2 cores): 1 warm-up + 3 timed forwards per point.
``--quick``: sizes 257 and 321 and strides 16 and 32 only, 1 + 2 forwards.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import model_builders  # noqa: E402

import mxnet as mx  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"], choices=["aspp", "vortex"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[257, 321, 513, 769])
    parser.add_argument("--size-stride", type=int, default=16, help="output stride of the size sweep")
    parser.add_argument("--strides", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--stride-size", type=int, default=513, help="input side of the stride sweep")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="wait until other processes use less than this fraction of the cores")
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--output", default="scaling")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.strides, args.warmup, args.repeats = [257, 321], [16, 32], 1, 2
    return args


def measure_point(nets: dict, size: int, output_stride: int, args) -> list:
    """Time every head's network at one (size, stride); interleaved rounds."""
    x = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size))
    runs = {head: (lambda net=net: net(x).wait_to_read()) for head, net in nets.items()}
    timings = common.time_interleaved(runs, args.warmup, args.repeats)
    rows = []
    for head, net in nets.items():
        macs = common.count_macs(net, (1, 3, size, size))["total"]
        t = timings[head]
        rows.append({"head": head, "size": size, "output_stride": output_stride, "gmacs": macs / 1e9,
                     "ms_per_image": 1000 * t["median_s"], "ms_per_image_min": 1000 * t["min_s"],
                     "gflops_per_s": 2 * macs / t["median_s"] / 1e9, "timing": t})
    return rows


def plot(size_rows, stride_rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, rows_all, key in ((left, size_rows, "size"), (right, stride_rows, "output_stride")):
        for head, marker in (("aspp", "o"), ("vortex", "s")):
            rows = sorted((r for r in rows_all if r["head"] == head), key=lambda r: r[key])
            if not rows:
                continue
            axis.plot([r[key] for r in rows], [r["ms_per_image"] for r in rows], marker=marker, label=head)
            if head == "aspp":  # what the time would be if it followed the multiply-adds exactly
                anchor = max(rows, key=lambda r: r["gmacs"])
                axis.plot([r[key] for r in rows], [anchor["ms_per_image"] * r["gmacs"] / anchor["gmacs"] for r in rows],
                          ":", color="grey", label="aspp, proportional to MACs")
    left.set(title=f"input size (output stride {args.size_stride})", xlabel="input side (pixels)",
             ylabel="ms / image (median)")
    left.set_xticks(sorted({r["size"] for r in size_rows}))
    right.set(title=f"output stride (input {args.stride_size}x{args.stride_size})", xlabel="output stride",
              ylabel="ms / image (median)")
    right.set_xscale("log", base=2)
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xticks(sorted({r["output_stride"] for r in stride_rows}))
    right.set_xticklabels([str(s) for s in sorted({r["output_stride"] for r in stride_rows})])
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.suptitle(f"DeepLabV3 ResNet-{args.depth}-v2 inference, batch 1, {common.cpu_model()}, "
                 f"{len(os.sched_getaffinity(0))} cores, MXNet {mx.__version__} (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    machine = common.machine_description([mx.cpu()])
    print(common.describe_machine(machine))
    quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
    print(common.describe_quiet_check(quiet), flush=True)
    mx.random.seed(0)

    def nets_at(output_stride):
        nets = {head: model_builders.build_ours(args.depth, head, output_stride) for head in args.heads}
        for net in nets.values():
            net.hybridize(static_alloc=True, static_shape=True)
        return nets

    size_rows, stride_rows = [], []
    nets = nets_at(args.size_stride)
    for size in args.sizes:
        print(f"size {size}, OS{args.size_stride}", flush=True)
        size_rows += measure_point(nets, size, args.size_stride, args)
    for output_stride in args.strides:
        print(f"OS{output_stride}, size {args.stride_size}", flush=True)
        stride_nets = nets if output_stride == args.size_stride else nets_at(output_stride)
        stride_rows += measure_point(stride_nets, args.stride_size, output_stride, args)
        del stride_nets

    for rows in (size_rows, stride_rows):
        aspp = {(r["size"], r["output_stride"]): r for r in rows if r["head"] == "aspp"}
        for r in rows:
            base = aspp.get((r["size"], r["output_stride"]))
            if r["head"] == "vortex" and base:
                r["vortex_overhead"] = r["ms_per_image"] / base["ms_per_image"] - 1
    columns = ["head", "size", "output_stride", "gmacs", "ms_per_image", "ms_per_image_min", "gflops_per_s",
               "vortex_overhead"]
    headers = ["head", "size", "OS", "GMACs", "ms/img", "min ms", "GFLOP/s", "vortex vs aspp"]
    print(f"\ninput size sweep, output stride {args.size_stride}, ResNet-{args.depth}-v2, batch 1")
    print(common.format_table(size_rows, columns, headers))
    print(f"\noutput stride sweep, {args.stride_size}x{args.stride_size}")
    print(common.format_table(stride_rows, columns, headers))

    png = common.RESULTS_DIR / f"{args.output}.png"
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot(size_rows, stride_rows, args, png)
    payload = {"benchmark": "scaling",
               "settings": {"depth": args.depth, "batch": 1, "warmup": args.warmup, "repeats": args.repeats,
                            "hybridize": {"static_alloc": True, "static_shape": True}, "quick": args.quick},
               "quiet_check": quiet, "gpu": common.NO_GPU_NOTE, "size_sweep": size_rows,
               "stride_sweep": stride_rows, "plot": str(png.relative_to(common.REPO_ROOT)), "machine": machine}
    print(f"\nwrote {common.write_results(args.output, payload)} and {png}")


if __name__ == "__main__":
    main()
