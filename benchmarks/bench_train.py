"""Training throughput and peak memory, ours vs gluoncv, and the data loader alone.

Training: images/s of one full SGD step (forward + loss + backward + update) on one context, crop
321x321, batch 4, and the peak resident memory of the process. Ours runs
``SegmentationTrainer.train_step`` (the step ``train.py`` runs, with its loss, its batch-wide
valid-pixel normalisation and its non-finite-loss guard); gluoncv runs its DeepLabV3 with its own
segmentation loss (``MixSoftmaxCrossEntropyLoss``, aux off) and a ``gluon.Trainer`` SGD step with the
same learning rate, momentum and weight decay. Both are hybridized with ``static_alloc=True`` (what
``train.py`` uses), get the same random batch, and run in a fresh subprocess each, so
``ru_maxrss`` (the peak) belongs to one model only. gluoncv's DeepLabV3 has output stride 8 only,
so the head-to-head is at OS 8; our OS 16 (the recipe's training stride) is listed too.
Each model also gets its step split into phases (forward under autograd, + loss, + backward) to
show where the time goes.

Loader: images/s of ``DataLoader(SeededTransformDataset(toy, TrainTransform(crop_size=513)),
TrainBatchSampler(batch 4))`` with 0, 1 and 2 workers on a toy set of 64 images of 375x500 (VOC-like
size), after a warm-up; the ratio loader(2 workers) / training step says whether the loader can
keep up. The loader is measured alone: in a real run its workers share the cores with the step.

Defaults (about 8-10 minutes on 2 cores): ResNet-50; ours ASPP and Vortex at OS 16, ours ASPP and
Vortex and gluoncv at OS 8; 1 warm-up + 4 timed steps each; phases 1 run each; loader 4 warm-up +
32 timed batches per worker count. ``--quick``: OS 16 ours-ASPP and the OS 8 pair, 1 + 2 steps, no
phases, loader 16 batches. Results: ``benchmarks/results/train.json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import model_builders  # noqa: E402

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, IGNORE_LABEL = 0.007, 0.9, 1e-4, 255


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--crop", type=int, default=321)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (graph build, allocation)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--phase-repeats", type=int, default=1, help="0 skips the phase split")
    parser.add_argument("--models", nargs="+",
                        default=["ours:aspp:16", "ours:vortex:16", "ours:aspp:8", "ours:vortex:8", "gluoncv:aspp:8"],
                        help="kind:head:output_stride entries")
    parser.add_argument("--loader-crop", type=int, default=513)
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--loader-batches", type=int, default=32)
    parser.add_argument("--loader-warmup", type=int, default=4)
    parser.add_argument("--no-loader", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="wait until other processes use less than this fraction of the cores")
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--output", default="train")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one model, print its JSON
    args = parser.parse_args(argv)
    if args.quick:
        args.models = ["ours:aspp:16", "ours:aspp:8", "gluoncv:aspp:8"]
        args.warmup, args.repeats, args.phase_repeats, args.loader_batches = 1, 2, 0, 16
    return args


# ----------------------------------------------------------------------------------------------
# one model, in its own process


def synthetic_batch(batch: int, crop: int, num_classes: int, ctx):
    """A fixed random batch: normalised-looking images and labels with ~5% ignored pixels."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, crop, crop), dtype=np.float32)
    labels = rng.integers(0, num_classes, (batch, crop, crop)).astype(np.float32)
    labels[rng.random(labels.shape) < 0.05] = IGNORE_LABEL
    return mx.nd.array(images, ctx=ctx), mx.nd.array(labels, ctx=ctx)


def make_ours_step(head: str, output_stride: int, depth: int, ctx):
    from deeplab_gluon.trainer import SegmentationTrainer

    net = model_builders.build_ours(depth, head, output_stride, ctx=ctx)
    net.hybridize(static_alloc=True)  # as run_training does
    trainer = SegmentationTrainer(net, [ctx], learning_rate=LEARNING_RATE, momentum=MOMENTUM,
                                  weight_decay=WEIGHT_DECAY, ignore_label=IGNORE_LABEL)

    def step(images, labels):
        return trainer.train_step(images, labels, LEARNING_RATE)

    def loss_of(outputs, labels):
        return trainer.loss_fn(outputs, labels)

    return net, step, loss_of


def make_gluoncv_step(depth: int, crop: int, ctx):
    from gluoncv.loss import MixSoftmaxCrossEntropyLoss
    from mxnet import autograd, gluon

    net = model_builders.build_gluoncv(depth, (crop, crop), ctx=ctx)
    net.hybridize(static_alloc=True)
    criterion = MixSoftmaxCrossEntropyLoss(aux=False, ignore_label=IGNORE_LABEL)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "wd": WEIGHT_DECAY})

    def step(images, labels):
        with autograd.record():
            losses = criterion(*net(images), labels)
        losses.backward()
        trainer.step(images.shape[0])
        return float(losses.mean().asscalar())  # ours returns the loss as a float too: same sync

    def loss_of(outputs, labels):
        return criterion(*outputs, labels)

    return net, step, loss_of


def time_phases(net, loss_of, images, labels, repeats: int) -> dict:
    """Seconds for forward (training mode, recorded), forward + loss, forward + loss + backward."""
    from mxnet import autograd

    def forward():
        with autograd.record():
            out = net(images)
        mx.nd.waitall()
        return out

    def forward_loss():
        with autograd.record():
            loss = loss_of(net(images), labels)
        mx.nd.waitall()
        return loss

    def forward_loss_backward():
        with autograd.record():
            loss = loss_of(net(images), labels)
        loss.backward()
        mx.nd.waitall()

    # interleaved, so that a burst of load elsewhere does not make one phase look slower than the next
    return common.time_interleaved({"forward": forward, "forward_loss": forward_loss,
                                    "forward_loss_backward": forward_loss_backward}, 0, repeats)


def run_worker(spec: dict) -> dict:
    """Build one model, time its training step, report throughput and peak memory."""
    warnings.filterwarnings("ignore")
    ctx = mx.cpu()
    mx.random.seed(0)
    rss_before_build_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kind, head, output_stride = spec["kind"], spec["head"], spec["output_stride"]
    if kind == "ours":
        net, step, loss_of = make_ours_step(head, output_stride, spec["depth"], ctx)
    else:
        net, step, loss_of = make_gluoncv_step(spec["depth"], spec["crop"], ctx)
    images, labels = synthetic_batch(spec["batch"], spec["crop"], model_builders.NUM_CLASSES, ctx)
    macs = common.count_macs(net, (spec["batch"], 3, spec["crop"], spec["crop"]))["total"]

    def one_step():
        step(images, labels)
        mx.nd.waitall()

    timing = common.time_call(one_step, spec["warmup"], spec["repeats"])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    result = {"timing": timing, "peak_rss_mib": peak_mib, "rss_before_build_mib": rss_before_build_mib,
              "forward_gmacs": macs / 1e9}
    if spec["phase_repeats"]:
        result["phases"] = time_phases(net, loss_of, images, labels, spec["phase_repeats"])
    return result


def run_model_in_subprocess(spec: dict) -> dict:
    return common.run_worker(Path(__file__).resolve(), "--worker", spec)


# ----------------------------------------------------------------------------------------------
# the loader


def measure_loader(args, root: Path) -> list:
    from mxnet import gluon

    from deeplab_gluon.data import TrainTransform, get_dataset, make_toy_dataset
    from deeplab_gluon.data.loader import SeededTransformDataset, TrainBatchSampler

    make_toy_dataset(root, num_train=64, num_val=0, image_size=(375, 500), seed=0)
    dataset = get_dataset("toy", root, "train")
    seeded = SeededTransformDataset(dataset, TrainTransform(crop_size=args.loader_crop), seed=0)
    rows = []
    for workers in args.loader_workers:
        total = args.loader_warmup + args.loader_batches
        sampler = TrainBatchSampler(len(dataset), args.batch, seed=0, start_iteration=0, stop_iteration=total)
        loader = gluon.data.DataLoader(seeded, batch_sampler=sampler, num_workers=workers)
        batches = iter(loader)
        for _ in range(args.loader_warmup):  # worker start-up and first reads are not the steady state
            next(batches)
        start = time.perf_counter()
        for images, labels in batches:
            images.wait_to_read()
        elapsed = time.perf_counter() - start
        rows.append({"workers": workers, "crop": args.loader_crop, "batch": args.batch,
                     "batches": args.loader_batches, "seconds": elapsed,
                     "images_per_s": args.loader_batches * args.batch / elapsed})
        del batches, loader
    return rows


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        common.print_worker_result(run_worker(json.loads(args.worker)))
        return
    warnings.filterwarnings("ignore")
    machine = common.machine_description([mx.cpu()])
    print(common.describe_machine(machine))
    quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
    print(common.describe_quiet_check(quiet), flush=True)

    train_rows = []
    if not args.no_train:
        for entry in args.models:
            kind, head, output_stride = entry.split(":")
            spec = {"kind": kind, "head": head, "output_stride": int(output_stride), "depth": args.depth,
                    "crop": args.crop, "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats,
                    "phase_repeats": args.phase_repeats}
            name = f"{kind} R{args.depth}-{'v2' if kind == 'ours' else 'v1s'} {head} OS{output_stride}"
            check = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
            print(f"training step: {name} ({common.describe_quiet_check(check)})", flush=True)
            result = run_model_in_subprocess(spec)
            median = result["timing"]["median_s"]
            row = {"model": name, **spec, "images_per_s": args.batch / median, "s_per_step": median,
                   "s_per_step_min": result["timing"]["min_s"], "peak_rss_mib": result["peak_rss_mib"],
                   "rss_before_build_mib": result["rss_before_build_mib"],
                   "forward_gmacs_per_batch": result["forward_gmacs"],
                   "gflops_per_s_3x_forward": 3 * 2 * result["forward_gmacs"] / median,
                   "timing": result["timing"], "quiet_check": check, "load_average_after": common.load_average()}
            if "phases" in result:
                phases = {k: v["median_s"] for k, v in result["phases"].items()}
                row.update(forward_s=phases["forward"], loss_s=phases["forward_loss"] - phases["forward"],
                           backward_s=phases["forward_loss_backward"] - phases["forward_loss"],
                           update_and_rest_s=median - phases["forward_loss_backward"], phases=result["phases"])
            train_rows.append(row)
        by_key = {(r["kind"], r["head"], r["output_stride"]): r for r in train_rows}
        for r in train_rows:
            partner = by_key.get(("gluoncv", "aspp", r["output_stride"]))
            if r["kind"] == "ours" and partner:
                r["throughput_ratio_vs_gluoncv"] = r["images_per_s"] / partner["images_per_s"]
                r["memory_ratio_vs_gluoncv"] = r["peak_rss_mib"] / partner["peak_rss_mib"]
            aspp = by_key.get(("ours", "aspp", r["output_stride"]))
            if r["kind"] == "ours" and r["head"] == "vortex" and aspp:
                r["vortex_overhead"] = r["s_per_step"] / aspp["s_per_step"] - 1
        print(f"\ntraining step, crop {args.crop}, batch {args.batch}, hybridize(static_alloc), cpu")
        print(common.format_table(train_rows, ["model", "images_per_s", "s_per_step", "s_per_step_min",
                                               "gflops_per_s_3x_forward", "peak_rss_mib",
                                               "throughput_ratio_vs_gluoncv", "memory_ratio_vs_gluoncv",
                                               "vortex_overhead"],
                                  ["model", "img/s", "s/step", "min s", "GFLOP/s (3x fwd)", "peak RSS MiB",
                                   "speed ours/gluoncv", "memory ours/gluoncv", "vortex vs aspp"]))
        if any("forward_s" in r for r in train_rows):
            print("\nwhere a step's time goes (seconds; phases timed separately, so they need not add up exactly)")
            print(common.format_table(train_rows, ["model", "forward_s", "loss_s", "backward_s", "update_and_rest_s"],
                                      ["model", "forward", "loss", "backward", "update + rest"]))

    loader_rows = []
    if not args.no_loader:
        with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
            loader_rows = measure_loader(args, Path(tmp))
        reference = next((r for r in train_rows if r["kind"] == "ours" and r["head"] == "aspp"
                          and r["output_stride"] == 16), None)
        for r in loader_rows:
            if reference:
                r["ratio_vs_training_step"] = r["images_per_s"] / reference["images_per_s"]
        print(f"\ndata loader alone: toy 375x500 images, TrainTransform(crop_size={args.loader_crop}), batch {args.batch}"
              + (f"; ratio vs {reference['model']} training step" if reference else ""))
        print(common.format_table(loader_rows, ["workers", "images_per_s", "ratio_vs_training_step"],
                                  ["workers", "img/s", "loader / training step"]))

    payload = {"benchmark": "train",
               "settings": {"crop": args.crop, "batch": args.batch, "depth": args.depth, "warmup": args.warmup,
                            "repeats": args.repeats, "learning_rate": LEARNING_RATE, "momentum": MOMENTUM,
                            "weight_decay": WEIGHT_DECAY, "hybridize": {"static_alloc": True},
                            "memory": "ru_maxrss of a fresh subprocess per model (peak over build + steps)",
                            "gluoncv": "resnet v1s, output stride 8 only, MixSoftmaxCrossEntropyLoss(aux=False)",
                            "quick": args.quick},
               "quiet_check": quiet, "gpu": common.NO_GPU_NOTE, "training": train_rows, "loader": loader_rows,
               "machine": machine}
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
