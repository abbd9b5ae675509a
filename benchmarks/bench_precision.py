"""Inference speed, memory and accuracy of fp32 (plain and MKL-DNN-fused), bf16 and int8 on the CPU.

Speed: images/s at 513x513, batch 1, of ResNet-50 and ResNet-101, ASPP and Vortex, output stride 16,
in four variants: ``fp32 plain`` (the network hybridized with ``static_alloc``, what ``load_model``
gives), and ``precision.optimize_for_inference`` with ``fp32`` (oneDNN-fused), ``bf16`` and ``int8``
(random weights: speed does not depend on their values). Each variant runs in a fresh subprocess, so
its peak resident memory (``ru_maxrss``) is its own; int8 is calibrated (on random images) in a
subprocess of its own first and the timed one loads the calibrated model from that cache, so its peak
is inference's, not calibration's. Warm-up calls first (the fused fp32 and int8 networks build a
static executor for an input size on its second call), then the timed repeats; median and minimum.

Accuracy: mIoU on the toy val split of the ``make demo`` checkpoint (``runs/demo/phase2``; ResNet-18
ASPP, OS 8, trained on the toy data) in each precision, int8 calibrated on ``--calib-images`` training
images in both calibration modes, and the share of pixels whose class equals fp32's, on the val split
and on the real photos of ``../shared/voc_sample`` (a toy model's classes mean nothing on VOC photos,
but how often int8 and bf16 change fp32's answer on natural images of 500x375 does). Accuracy does
not depend on machine load. ``--int8-variants`` also scores int8 with other parts kept in fp32.

Defaults take about 15-20 minutes on 2 cores. ``--quick``: ResNet-50 ASPP at 321x321, 2 repeats, and
the accuracy on 10 val images with 8 calibration images and 3 VOC photos (a smoke test of the script).
Results: ``benchmarks/results/precision.json`` (``--output`` to change).
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

import common  # noqa: E402  (path set above; imports deeplab_gluon before mxnet)
import model_builders  # noqa: E402

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

VARIANTS = ("fp32 plain", "fp32 fused", "bf16", "int8")
DEMO_CHECKPOINT = common.REPO_ROOT / "runs" / "demo" / "phase2"
VOC_SAMPLE = common.REPO_ROOT.parent / "shared" / "voc_sample"
INT8_VARIANTS = ((), ("stem",), ("stem", "classifier"), ("stem", "classifier", "image_pooling"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small subset, to check the script")
    parser.add_argument("--depths", type=int, nargs="+", default=[50, 101])
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"])
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--size", type=int, default=513, help="square input side")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls (the second builds static executors)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--speed-calib-images", type=int, default=4, help="random images calibrating the speed runs")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="model for the accuracy part")
    parser.add_argument("--calib-images", type=int, default=32, help="training images calibrating int8")
    parser.add_argument("--val-limit", type=int, default=None, help="score only the first N val images")
    parser.add_argument("--voc-limit", type=int, default=None, help="compare on only the first N VOC photos")
    parser.add_argument("--int8-variants", action="store_true", help="also score int8 with other parts in fp32")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="wait until other processes use less than this fraction of the cores")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine")
    parser.add_argument("--output", default="precision", help="results name: benchmarks/results/<name>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one variant of one model, print JSON
    args = parser.parse_args(argv)
    if args.quick:
        args.depths, args.heads, args.size, args.repeats, args.speed_calib_images = [50], ["aspp"], 321, 2, 2
        args.calib_images, args.val_limit, args.voc_limit = 8, 10, 3
    return args


# ------------------------------------------------------------------------------------------------- speed

def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_speed_worker(spec: dict) -> dict:
    """One variant of one model in this (fresh) process: prepare, warm up, time; peak memory."""
    from deeplab_gluon.precision import optimize_for_inference

    warnings.filterwarnings("ignore")
    ctx, size = mx.cpu(), spec["size"]
    mx.random.seed(0)  # the same weights in the calibrating and the timed process
    net = model_builders.build_ours(spec["depth"], spec["head"], spec["output_stride"], ctx=ctx)
    net.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, size, size), ctx=ctx)
    start = time.perf_counter()
    if spec["variant"] == "fp32 plain":
        run, used, notes, start = net, "fp32", [], None
    else:
        calibration = mx.nd.random.uniform(-2, 2, shape=(spec["calib_images"], 3, size, size))
        prepared = optimize_for_inference(net, spec["variant"].split()[0], ctx, calibration_batches=calibration,
                                          cache_prefix=spec.get("cache_prefix"))
        run, used, notes = prepared, prepared.precision, prepared.notes
    prepare_s = None if start is None else time.perf_counter() - start
    result = {"precision_used": used, "notes": notes, "prepare_s": prepare_s}
    if spec.get("prepare_only"):
        return result

    def forward():
        out = run(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()

    result["timing"] = common.time_call(forward, spec["warmup"], spec["repeats"])
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def measure_speed(args) -> list:
    rows = []
    script = Path(__file__).resolve()
    for depth in args.depths:
        for head in args.heads:
            model = f"R{depth}-v2 {head} OS{args.output_stride}"
            with tempfile.TemporaryDirectory(prefix="bench-int8-") as scratch:
                for variant in args.variants:
                    spec = {"depth": depth, "head": head, "output_stride": args.output_stride, "size": args.size,
                            "variant": variant, "warmup": args.warmup, "repeats": args.repeats,
                            "calib_images": args.speed_calib_images}
                    if variant == "int8":  # calibrate apart, so the timed process's peak is inference's
                        spec["cache_prefix"] = str(Path(scratch) / "int8")
                        calibrated = common.run_worker(script, "--worker", {**spec, "prepare_only": True})
                    quiet = common.wait_for_quiet_machine(args.max_busy, args.max_wait)
                    print(f"[{model} {variant}] {common.describe_quiet_check(quiet)}", flush=True)
                    result = common.run_worker(script, "--worker", spec)
                    if variant == "int8":
                        result["prepare_s"] = calibrated["prepare_s"]  # calibration, not the cache load
                    median = result["timing"]["median_s"]
                    rows.append({"model": model, "depth": depth, "head": head, "variant": variant,
                                 "precision_used": result["precision_used"], "size": args.size,
                                 "images_per_s": 1 / median, "ms_per_image": 1000 * median,
                                 "ms_per_image_min": 1000 * result["timing"]["min_s"],
                                 "peak_rss_mib": result["peak_rss_mib"], "prepare_s": result["prepare_s"],
                                 "notes": result["notes"], "timing": result["timing"], "quiet_check": quiet})
    plain = {r["model"]: r for r in rows if r["variant"] == "fp32 plain"}
    for row in rows:
        base = plain.get(row["model"])
        if base:
            row["speedup_vs_fp32_plain"] = base["ms_per_image"] / row["ms_per_image"]
            row["memory_vs_fp32_plain"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    return rows


# ---------------------------------------------------------------------------------------------- accuracy

def voc_photos(limit):
    from deeplab_gluon.data import read_image
    from deeplab_gluon.inference import image_to_batch

    folder = VOC_SAMPLE / "VOC2012" / "JPEGImages"
    files = sorted(folder.glob("*.jpg"))[:limit] if folder.is_dir() else []
    return [image_to_batch(read_image(path)) for path in files]


def resolve_data_dir(meta: dict) -> Path:
    data_dir = Path(meta["config"]["data_dir"])
    return data_dir if data_dir.is_absolute() or data_dir.exists() else common.REPO_ROOT / data_dir


def measure_accuracy(args) -> dict:
    from deeplab_gluon.checkpoint import Checkpoint, CheckpointError
    from deeplab_gluon.data import EvalTransform, get_dataset
    from deeplab_gluon.inference import evaluate_dataset, predict_labels
    from deeplab_gluon.precision import calibration_images, optimize_for_inference

    try:
        checkpoint = Checkpoint.open(args.checkpoint)
        net, meta = checkpoint.load(), checkpoint.meta
    except CheckpointError as err:
        note = (f"not measured: {err}. Make the demo checkpoint with `make demo` (about 10 minutes on 2 cores; "
                f"writes runs/demo/phase2) or pass --checkpoint")
        print(note)
        return {"note": note}
    config = meta.get("config") or {}
    dataset, data_dir = config.get("dataset", "toy"), resolve_data_dir(meta)
    if dataset == "toy" and not data_dir.is_dir():
        from deeplab_gluon.data import make_toy_dataset

        make_toy_dataset(data_dir, seed=0)  # what train.py generated for the demo
    val = get_dataset(dataset, data_dir, "val", transform=EvalTransform())
    if args.val_limit:
        val = val.take(args.val_limit)
    train_split = config.get("train_split") or "train"
    train = get_dataset(dataset, data_dir, train_split, transform=EvalTransform())
    num_classes = int(meta["model"]["num_classes"])
    photos = voc_photos(args.voc_limit)
    val_images = [mx.nd.array(val[i][0][None]) for i in range(len(val))]

    def class_maps(network, images):
        return [predict_labels(network, image).asnumpy() for image in images]

    reference_val, reference_voc = class_maps(net, val_images), class_maps(net, photos)
    calibration = calibration_images(train, args.calib_images)
    candidates = [("fp32 plain", {}), ("fp32 fused", dict(precision="fp32")), ("bf16", dict(precision="bf16")),
                  ("int8 naive", dict(precision="int8", calib_mode="naive")),
                  ("int8 entropy", dict(precision="int8", calib_mode="entropy"))]
    if args.int8_variants:
        candidates += [(f"int8 naive, fp32 kept: {'+'.join(keep) or 'nothing'}",
                        dict(precision="int8", calib_mode="naive", int8_keep_fp32=keep)) for keep in INT8_VARIANTS]
    rows = []
    for name, options in candidates:
        start = time.perf_counter()
        network = optimize_for_inference(net, calibration_batches=calibration, **options) if options else net
        prepare_s = time.perf_counter() - start if options else None
        confusion = evaluate_dataset(network, val, [mx.cpu()], num_classes, int(meta.get("ignore_label", 255)),
                                     progress=False)
        agree_val = np.mean([(a == b).mean() for a, b in zip(class_maps(network, val_images), reference_val)])
        agree_voc = np.mean([(a == b).mean() for a, b in zip(class_maps(network, photos), reference_voc)]) \
            if photos else None
        rows.append({"variant": name, "precision_used": getattr(network, "precision", "fp32"),
                     "notes": getattr(network, "notes", []), "mIoU": confusion.miou(),
                     "pixAcc": confusion.pixel_accuracy(),
                     "pixel_agreement_val": float(agree_val),
                     "pixel_agreement_voc_sample": None if agree_voc is None else float(agree_voc),
                     "prepare_s": prepare_s})
        print(f"  {name}: mIoU {100 * rows[-1]['mIoU']:.2f}", flush=True)
    for row in rows:
        row["mIoU_points_vs_fp32"] = 100 * (row["mIoU"] - rows[0]["mIoU"])
    return {"checkpoint": str(checkpoint.path), "iteration": meta.get("iteration"), "model": meta["model"],
            "dataset": dataset, "data_dir": str(data_dir), "val_images": len(val),
            "calibration": f"{calibration.shape[0]} images of {dataset} {train_split}, evenly spaced",
            "voc_sample_photos": len(photos), "voc_sample": str(VOC_SAMPLE) if photos else "absent",
            "rows": rows}


# --------------------------------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        common.print_worker_result(run_speed_worker(json.loads(args.worker)))
        return
    warnings.filterwarnings("ignore")
    machine = common.machine_description([mx.cpu()])
    print(common.describe_machine(machine))
    speed = accuracy = None
    if not args.no_speed:
        speed = measure_speed(args)
        print(f"\ninference, {args.size}x{args.size}, batch 1, cpu")
        print(common.format_table(speed, ["model", "variant", "precision_used", "images_per_s", "ms_per_image",
                                          "ms_per_image_min", "speedup_vs_fp32_plain", "peak_rss_mib",
                                          "memory_vs_fp32_plain", "prepare_s"],
                                  ["model", "variant", "runs", "img/s", "ms/img", "min ms", "speed vs plain",
                                   "peak MiB", "memory vs plain", "prepare s"]))
    if not args.no_accuracy:
        print(f"\naccuracy of {args.checkpoint}")
        accuracy = measure_accuracy(args)
        if "rows" in accuracy:
            table = [{**r, "mIoU_pct": 100 * r["mIoU"], "agree_val_pct": 100 * r["pixel_agreement_val"],
                      "agree_voc_pct": None if r["pixel_agreement_voc_sample"] is None
                      else 100 * r["pixel_agreement_voc_sample"]} for r in accuracy["rows"]]
            print(f"{accuracy['dataset']} val ({accuracy['val_images']} images), int8 calibrated on "
                  f"{accuracy['calibration']}; agreement = pixels whose class equals fp32 plain's")
            print(common.format_table(table, ["variant", "precision_used", "mIoU_pct", "mIoU_points_vs_fp32",
                                              "agree_val_pct", "agree_voc_pct", "prepare_s"],
                                      ["variant", "runs", "mIoU %", "pts vs fp32", "agree val %",
                                       f"agree VOC photos % ({accuracy['voc_sample_photos']})", "prepare s"]))
    payload = {
        "benchmark": "precision",
        "command": "python benchmarks/bench_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"size": args.size, "batch": 1, "output_stride": args.output_stride, "warmup": args.warmup,
                     "repeats": args.repeats, "speed_calib_images": args.speed_calib_images,
                     "calib_images": args.calib_images, "val_limit": args.val_limit, "voc_limit": args.voc_limit,
                     "quick": args.quick, "context": "cpu(0)",
                     "memory": "ru_maxrss of a fresh subprocess per variant (int8: calibrated in another one)"},
        "gpu": common.NO_GPU_NOTE,
        "speed": speed,
        "accuracy": accuracy,
        "machine": machine,
    }
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
