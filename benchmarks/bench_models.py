"""Every model a user would pick, timed: backbone x head x decoder x separable (and the lite MobileNetV2), fp32 and int8.

For each model: GMACs and parameters (from the graph's inferred shapes, as ``model_table.py``), and in
fp32 (oneDNN-fused, static shapes: what ``predict --precision fp32`` runs) and int8 (calibrated on
random images; the layers ``precision.INT8_KEEP_FP32`` names stay fp32) ms/image, images/s and the peak
resident memory of a fresh process that runs only that model (int8 is calibrated in a process of its
own first, so the timed one's peak is inference's). Batch 1, 513x513, output stride 16 by default.

Rows (``--backbones`` x ``--heads`` x ``--decoders`` x ``--separable``, default ResNet-18/50/101-v2,
MobileNetV2, Xception-65; ASPP and Vortex; DeepLabV3 and V3+; dense and separable), plus the light
MobileNetV2 models: ``deeplabv3_mobilenetv2_1.0_lite`` and its DeepLabV3+ with the separable decoder
``deeplabv3plus_mobilenetv2_1.0_lite_sep`` (``--no-lite`` leaves them out).

Accuracy: ``--accuracy FILE...`` JSON files of ``{"results": [{"model": NAME, "mIoU": 0.61, "source":
"toy demo val"}]}`` (NAME as ``ModelSpec.name``; mIoU in 0..1); every timed model with a figure goes into
``benchmarks/results/models_cost_accuracy.png`` (fp32 ms/image against mIoU). Without figures no
picture is drawn, and the JSON says so.

Writes ``benchmarks/results/models.json`` and the README's table ``benchmarks/results/models.md``.
Each timed run waits for a quiet machine first (``--max-busy``); a full run takes long (about 44 models x
2 precisions x a few seconds per 513x513 forward on 2 cores; not measured yet).

    python benchmarks/bench_models.py                   # the full table (a quiet machine!)
    python benchmarks/bench_models.py --quick           # smoke test: 5 models at 65x65, results/models_quick.*
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

import common  # noqa: E402  (path set above)

import mxnet as mx  # noqa: E402

from deeplab_gluon.models import ModelSpec, build_model  # noqa: E402

NUM_CLASSES = 21
BACKBONES = ["resnet18_v2", "resnet50_v2", "resnet101_v2", "mobilenetv2_1.0", "xception65"]
LITE_MODELS = [dict(backbone="mobilenetv2_1.0", head="lite", decoder=False, separable=False),
               dict(backbone="mobilenetv2_1.0", head="lite", decoder=True, separable=True)]
# --quick: one of each kind of row (dense, separable head, separable decoder, Vortex, lite, lite V3+)
QUICK_MODELS = [dict(backbone="resnet18_v2", head="aspp", decoder=False, separable=False),
                dict(backbone="resnet18_v2", head="aspp", decoder=True, separable=True),
                dict(backbone="resnet18_v2", head="vortex", decoder=False, separable=True)] + LITE_MODELS
QUICK_SIZE = 65
PRECISIONS = ("fp32", "int8")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {len(QUICK_MODELS)} models at {QUICK_SIZE}x{QUICK_SIZE}, 1 warm-up + 2 "
                             "timed runs, no waiting for a quiet machine; writes results/models_quick.*")
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"], choices=["aspp", "vortex"])
    parser.add_argument("--decoders", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument("--separable", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument("--no-lite", action="store_true", help="leave out the light MobileNetV2 models")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--output-stride", type=int, default=16, choices=[8, 16])
    parser.add_argument("--size", type=int, default=513, help="square input side (default 513)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calib-images", type=int, default=4, help="random images int8 is calibrated on")
    parser.add_argument("--accuracy", nargs="*", default=[], metavar="FILE", help="JSON files of mIoU figures")
    parser.add_argument("--max-busy", type=float, default=0.15, help="busy fraction of the cores to wait below")
    parser.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--output", default="models", help="results name: benchmarks/results/<name>.json/.md/.png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.warmup, args.repeats, args.calib_images, args.max_wait = QUICK_SIZE, 1, 2, 2, 0.0
        args.output = "models_quick" if args.output == "models" else args.output
    return args


def model_list(args) -> list:
    if args.quick:
        return [dict(m) for m in QUICK_MODELS]
    models = [dict(backbone=b, head=h, decoder=bool(d), separable=bool(s)) for b in args.backbones
              for h in args.heads for d in args.decoders for s in args.separable]
    return models + ([] if args.no_lite else [dict(m) for m in LITE_MODELS])


def spec_of(model: dict, output_stride: int) -> ModelSpec:
    return ModelSpec(num_classes=NUM_CLASSES, output_stride=output_stride, **model)


def count(spec: ModelSpec, size: int) -> dict:
    """GMACs and parameters (millions) of one image of size x size, uninitialised network."""
    net = build_model(spec, initialize=False)
    shape = (1, 3, size, size)
    return {"gmacs": common.count_macs(net, shape)["total"] / 1e9,
            "params_m": common.count_params(net, shape)["total"] / 1e6}


def run_worker(job: dict) -> dict:
    """One precision of one model in this fresh process: prepare, warm up, time; peak memory."""
    from deeplab_gluon.precision import optimize_for_inference

    warnings.filterwarnings("ignore")
    ctx, size = mx.cpu(), job["size"]
    mx.random.seed(0)  # the same weights in the calibrating and the timed process
    net = build_model(ModelSpec.from_dict(job["spec"]), ctx)
    net.hybridize(static_alloc=True)
    calibration = mx.nd.random.uniform(-2, 2, shape=(job["calib_images"], 3, size, size), ctx=ctx)
    start = time.perf_counter()
    prepared = optimize_for_inference(net, job["precision"], ctx, calibration_batches=calibration,
                                      cache_prefix=job.get("cache_prefix"))
    result = {"precision_used": prepared.precision, "notes": prepared.notes,
              "prepare_s": time.perf_counter() - start}
    if job.get("prepare_only"):
        return result
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, size, size), ctx=ctx)
    # --quick never redoes a disturbed run (its timings mean nothing); otherwise common.MAX_OTHERS does
    max_others = float("inf") if job.get("quick") else None
    result["timing"] = common.time_interleaved({"model": lambda: prepared(x).wait_to_read()}, job["warmup"],
                                               job["repeats"], max_others=max_others)["model"]
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    return result


def time_model(spec: ModelSpec, precision: str, args, script: Path) -> dict:
    job = {"spec": spec.to_dict(), "precision": precision, "size": args.size, "warmup": args.warmup,
           "repeats": args.repeats, "calib_images": args.calib_images, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-models-") as scratch:
        if precision == "int8":  # calibrate apart: the timed process loads the cache, its peak is inference's
            job["cache_prefix"] = str(Path(scratch) / "int8")
            calibrated = common.run_worker(script, "--worker", {**job, "prepare_only": True})
        quiet = (common.wait_for_quiet_machine(args.max_busy, args.max_wait) if args.max_wait > 0
                 else {"skipped": "--quick: no waiting for a quiet machine"})
        result = common.run_worker(script, "--worker", job)
    if precision == "int8":
        result["prepare_s"] = calibrated["prepare_s"]  # the calibration, not the cache load
    median = result["timing"]["median_s"]
    return {"precision": precision, "precision_used": result["precision_used"], "ms_per_image": 1000 * median,
            "images_per_s": 1 / median, "peak_rss_mib": result["peak_rss_mib"], "prepare_s": result["prepare_s"],
            "notes": result["notes"], "timing": result["timing"], "quiet_check": quiet}


def read_accuracy(files) -> dict:
    """model name -> {"mIoU", "source"} from ``--accuracy`` files; a malformed file stops with its name."""
    figures = {}
    for name in files:
        try:
            for entry in json.loads(Path(name).read_text())["results"]:
                figures[entry["model"]] = {"mIoU": float(entry["mIoU"]), "source": entry.get("source", name)}
        except (OSError, ValueError, KeyError, TypeError) as err:
            sys.exit(f"bench_models.py: error: cannot read accuracy figures from {name}: {err}")
    return figures


def markdown_table(rows, size: int) -> str:
    """One line per model: GMACs, parameters, then ms/image, images/s and peak MiB per precision."""
    precisions = [p for p in PRECISIONS if any(p in r["timed"] for r in rows)]
    header = ["model", "GMACs", "params (M)"] + [f"{p} {what}" for p in precisions
                                                 for what in ("ms/image", "images/s", "peak MiB")]
    lines = [f"<!-- bench_models.py: {size}x{size}, batch 1 -->",
             "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        cells = [f"`{row['model']}`", f"{row['gmacs']:.2f}", f"{row['params_m']:.1f}"]
        for precision in precisions:
            timed = row["timed"].get(precision)
            cells += (["-"] * 3 if timed is None else
                      [f"{timed['ms_per_image']:.0f}", f"{timed['images_per_s']:.2f}", f"{timed['peak_rss_mib']:.0f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_cost_accuracy(rows, path: Path) -> int:
    """fp32 ms/image against mIoU of every row with a figure; returns how many points were drawn."""
    points = [(r["timed"]["fp32"]["ms_per_image"], 100 * r["accuracy"]["mIoU"], r["model"]) for r in rows
              if r.get("accuracy") and "fp32" in r["timed"]]
    if not points:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for ms, miou, name in points:
        axes.scatter(ms, miou)
        axes.annotate(name.replace("deeplabv3", "v3"), (ms, miou), fontsize=7, xytext=(3, 3),
                      textcoords="offset points")
    axes.set_xlabel("fp32 ms/image (batch 1)")
    axes.set_ylabel("mIoU %")
    axes.set_title("cost against accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return len(points)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        common.print_worker_result(run_worker(json.loads(args.worker)))
        return
    warnings.filterwarnings("ignore")
    accuracy = read_accuracy(args.accuracy)
    machine = common.machine_description()
    script = Path(__file__).resolve()
    rows = []
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        def tqdm(items, **_):
            return items
    models = model_list(args)
    for model in tqdm(models, desc="models", unit="model"):
        spec = spec_of(model, args.output_stride)
        row = {"model": spec.name, **model, "output_stride": args.output_stride, "size": args.size,
               **count(spec, args.size), "timed": {}}
        for precision in args.precisions:
            row["timed"][precision] = time_model(spec, precision, args, script)
        if spec.name in accuracy:
            row["accuracy"] = accuracy[spec.name]
        rows.append(row)
    flat = [{"model": r["model"], "gmacs": r["gmacs"], "params_m": r["params_m"], "precision": p,
             "ms_per_image": t["ms_per_image"], "images_per_s": t["images_per_s"], "peak_rss_mib": t["peak_rss_mib"]}
            for r in rows for p, t in r["timed"].items()]
    print(common.format_table(flat, ["model", "gmacs", "params_m", "precision", "ms_per_image", "images_per_s",
                                     "peak_rss_mib"],
                              ["model", "GMACs", "params M", "precision", "ms/image", "images/s", "peak MiB"]))
    results = common.RESULTS_DIR
    table = markdown_table(rows, args.size)
    (results / f"{args.output}.md").parent.mkdir(parents=True, exist_ok=True)
    (results / f"{args.output}.md").write_text(table + "\n")
    drawn = draw_cost_accuracy(rows, results / f"{args.output}_cost_accuracy.png")
    payload = {
        "benchmark": "models",
        "command": "python benchmarks/bench_models.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"size": args.size, "batch": 1, "output_stride": args.output_stride, "num_classes": NUM_CLASSES,
                     "warmup": args.warmup, "repeats": args.repeats, "calib_images": args.calib_images,
                     "quick": args.quick, "fp32": "optimize_for_inference('fp32'): oneDNN-fused, static shapes",
                     "int8": "calibrated (naive) on random images; precision.INT8_KEEP_FP32 stays fp32",
                     "memory": "ru_maxrss of a fresh subprocess per model and precision",
                     "macs": "Convolution/Deconvolution/FullyConnected layers (common.count_macs)"},
        "cost_accuracy_picture": (f"{args.output}_cost_accuracy.png ({drawn} models)" if drawn else
                                  "not drawn: no accuracy figures given (--accuracy FILE)"),
        "gpu": common.NO_GPU_NOTE,
        "results": rows,
        "machine": machine,
    }
    if args.quick:
        payload["warning"] = "smoke test at a tiny size on a busy machine: the timings mean nothing"
    print(f"\n{table}\n\nwrote {common.write_results(args.output, payload)}, {results / (args.output + '.md')}"
          + (f", {results / (args.output + '_cost_accuracy.png')}" if drawn else ""))


if __name__ == "__main__":
    main()
