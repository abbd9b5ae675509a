"""Running a trained network in fp32 (MKL-DNN-fused), bf16 (AMP) or int8 (oneDNN quantization) for inference.

:func:`optimize_for_inference` turns a loaded fp32 DeepLab network into an :class:`InferenceNetwork`:
a callable taking a normalised batch ``(N, 3, H, W)`` float32 of any size and returning the main
logits ``(N, num_classes, H, W)`` float32, so :mod:`~deeplab_gluon.inference` (multi-scale, flip,
evaluation) runs unchanged in every precision.

* ``fp32``: on the CPU, ``optimize_for(backend="MKLDNN")`` fuses convolution, BatchNorm, ReLU and
  residual additions into oneDNN kernels (same outputs to float rounding). The fused graph takes any
  input size but is only faster at a fixed one, so each repeated input size gets a static fused
  executor (:mod:`~deeplab_gluon.static_shapes`) and other sizes run the plain graph. On a GPU the
  plain hybridized network.
* ``bf16``: MXNet's AMP casts Convolution (and what follows it up to the next fp32-only operator) to
  bfloat16 and leaves operators without a bf16 kernel in fp32 (AMP's own list). It needs a CPU with
  AVX512-BF16 or AMX; without one, this says so in one line and runs fp32.
* ``int8``: ``quantize_net_v2`` with oneDNN, calibrated on a few images; the layers that lose most
  accuracy stay fp32 (:data:`INT8_KEEP_FP32`). Static executors per repeated size as for fp32 (int8
  ran at about half speed with changing sizes). The calibrated graph can be cached as a symbol +
  params pair (:func:`int8_cache_prefix`) that plain MXNet loads with ``SymbolBlock.imports``.

The auxiliary head, a training aid, is left out of every prepared network.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, SymbolBlock

from .checkpoint import Checkpoint
from .errors import UsageError
from .flags import changed_flags, flag
from .cpu_threads import ThreadsFlag
from .models.deeplab import split_outputs
from .models.spec import OUTPUT_STRIDES
from .static_shapes import StaticShapeExecutors

PRECISIONS = ("fp32", "bf16", "int8")
CALIB_MODES = ("naive", "entropy")
INPUT_NAME = "data"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Parts of the network int8 leaves in fp32 (see int8_excluded_layers; measured in docs/performance.md).
INT8_KEEP_FP32 = ("stem",)
INT8_RECIPE = 1  # bump when the quantization recipe changes, so cached int8 models are redone

CalibrationSource = Union[mx.nd.NDArray, Iterable[mx.nd.NDArray], Callable[[], object]]


class PrecisionError(RuntimeError):
    """A precision cannot be prepared as asked (no calibration images, unknown precision...)."""


@dataclass
class InferenceNetwork:
    """A network prepared for inference in one precision; call it like the network.

    ``net(x)``: ``x`` (N, 3, H, W) float32 normalised, any H and W -> main logits (N, C, H, W) float32.
    ``precision`` is what runs (``fp32`` when bf16 was asked on a CPU without the instructions);
    ``notes`` are one-line messages for the log (fallbacks, cache use, layers kept in fp32).
    """
    net: Callable[[mx.nd.NDArray], mx.nd.NDArray]
    precision: str
    requested: str
    notes: List[str] = field(default_factory=list)
    graph: Optional[HybridBlock] = None  # bf16 and int8: the converted graph, for HybridBlock.export

    def __call__(self, x: mx.nd.NDArray) -> mx.nd.NDArray:
        return self.net(x)

    def describe(self) -> str:
        """One line: the precision that runs and why, for logs and reports."""
        return "; ".join([f"precision {self.precision}"] + self.notes)


def main_logits_block(net: HybridBlock) -> SymbolBlock:
    """The graph from the input to the main logits of a DeepLab network, sharing its parameters.

    ``(main, aux)`` networks lose the auxiliary head (a training aid) and its parameters, which
    AMP's and quantization's converters would otherwise expect in the graph.
    """
    data = mx.sym.var(INPUT_NAME)
    out = net(data)
    main = split_outputs(out)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SymbolBlock warns about parameter name prefixes
        return SymbolBlock(main, data, params=net.collect_params())


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has bfloat16 arithmetic that oneDNN uses (``avx512_bf16`` or ``amx_bf16`` flags)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split(":", 1)[1].split()) & set(BF16_CPU_FLAGS))
    return False


def optimize_for_inference(net: HybridBlock, precision: str = "fp32", ctx: Optional[mx.Context] = None,
                           calibration_batches: Optional[CalibrationSource] = None, calib_mode: str = "naive",
                           cache_prefix: Optional[Path] = None, int8_keep_fp32: Sequence[str] = INT8_KEEP_FP32,
                           max_static_shapes: int = 4, has_bf16: Optional[bool] = None) -> InferenceNetwork:
    """Prepare ``net`` (a loaded fp32 DeepLab network, parameters on ``ctx``) for inference in ``precision``.

    ``calibration_batches`` (int8 only): normalised images ``(N, 3, H, W)`` of one size, as one
    NDArray, an iterable of such batches, or a callable returning either, called only when
    calibration is needed (not when ``cache_prefix`` holds a calibrated model). ``calib_mode``:
    ``naive`` (min/max of each layer's outputs) or ``entropy`` (KL-optimal thresholds).
    ``cache_prefix``: where the calibrated int8 model is stored and found
    (``<prefix>-symbol.json``, ``<prefix>-0000.params``, ``<prefix>-meta.json``); see
    :func:`int8_cache_prefix`. ``int8_keep_fp32``: parts left in fp32 (:func:`int8_excluded_layers`).
    ``max_static_shapes``: fp32 and int8 on the CPU run the input sizes seen more than once in
    executors of their own, up to this many (see :mod:`~deeplab_gluon.static_shapes`); 0 for none.
    ``has_bf16``: override the CPU check (tests).
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if calib_mode not in CALIB_MODES:
        raise PrecisionError(f"calibration mode must be one of {', '.join(CALIB_MODES)}, got {calib_mode!r}")
    ctx = ctx or mx.cpu()
    requested, notes = precision, []
    if precision != "fp32" and ctx.device_type != "cpu":
        notes.append(f"{precision} runs on the CPU only with MXNet 1.9.1 (oneDNN); running fp32 on {ctx}")
        precision = "fp32"
    elif precision == "bf16" and not (cpu_has_bf16() if has_bf16 is None else has_bf16):
        notes.append("bf16 asked, but this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16 in "
                     "/proc/cpuinfo): running fp32")
        precision = "fp32"
    if precision == "bf16":
        converted = _bf16(net, ctx)
        return InferenceNetwork(converted, "bf16", requested, notes, graph=converted)
    if precision == "int8":
        symbol, block = _int8(net, ctx, calibration_batches, calib_mode, cache_prefix, int8_keep_fp32, notes)
        return InferenceNetwork(StaticShapeExecutors(block, partial(_static_int8, symbol, block), max_static_shapes),
                                "int8", requested, notes, graph=block)
    if ctx.device_type != "cpu":
        return InferenceNetwork(_hybridized(main_logits_block(net)), "fp32", requested, notes)
    return InferenceNetwork(StaticShapeExecutors(_hybridized(main_logits_block(net)), partial(_fused_fp32, net),
                                                 max_static_shapes), "fp32", requested, notes)


def _hybridized(block: HybridBlock) -> HybridBlock:
    block.hybridize(static_alloc=True)
    return block


def _fused_fp32(net: HybridBlock, x: mx.nd.NDArray) -> HybridBlock:
    """The fp32 graph with oneDNN's conv + BN + ReLU + sum fusion, static for ``x``'s shape.

    Fused but fed changing shapes it ran slower than the plain graph, so it is only ever built
    for one shape (docs/performance.md).
    """
    fused = main_logits_block(net)
    fused.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    return fused


# AMP's bf16 lists keep broadcast_like in fp32, which makes the image-pooling branch of ASPP and Vortex
# fp32 while the other branches are bf16, and Concat refuses mixed inputs. broadcast_like has a bf16
# kernel (it copies values, so it is exact), so it may follow its input's type.
BF16_KEEP_FP32_EXCEPT = ("broadcast_like",)


def _bf16(net: HybridBlock, ctx: mx.Context) -> HybridBlock:
    """AMP's bf16 graph. Neither static shapes nor oneDNN fusion made it faster (fusion made it
    twice as slow), so it runs as converted."""
    from mxnet.contrib import amp

    main = main_logits_block(net)
    main.hybridize()
    main(mx.nd.zeros((1, 3, 64, 64), ctx=ctx))  # AMP converts the traced graph; its size binds nothing
    fp32_ops = [op for op in amp.list_fp32_ops(amp.amp.bfloat16) if op not in BF16_KEEP_FP32_EXCEPT]
    # AMP treats Concat as dtype-neutral, but the DeepLabV3+ decoder concatenates the fp32 output of
    # BilinearResize2D (an fp32 op) with bf16 low-level features, which Concat refuses: run it in fp32
    nodes = json.loads(main(mx.sym.var(INPUT_NAME)).tojson())["nodes"]
    fp32_concats = [node["name"] for node in nodes if node["op"] == "Concat" and "decoder" in node["name"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = amp.convert_hybrid_block(main, target_dtype="bfloat16", fp32_ops=fp32_ops,
                                             excluded_sym_names=fp32_concats, ctx=ctx)
    return _hybridized(converted)


# ------------------------------------------------------------------------------------------------------ int8

def int8_excluded_layers(symbol: mx.sym.Symbol, keep_fp32: Sequence[str] = INT8_KEEP_FP32) -> List[str]:
    """Names of the graph's nodes that int8 leaves in fp32, by part:

    * ``stem``: the first convolution and what lies between the input and it (ResNet-v2's input
      BatchNorm), which see the raw image;
    * ``classifier``: the last convolution, which gives the logits;
    * ``image_pooling``: the image-level branch of ASPP / Vortex (a 1x1 map of averages);
    * ``vortex_pooling``: Vortex's box averages.
    """
    unknown = set(keep_fp32) - {"stem", "classifier", "image_pooling", "vortex_pooling"}
    if unknown:
        raise PrecisionError(f"unknown network parts {sorted(unknown)} to keep in fp32")
    nodes = json.loads(symbol.tojson())["nodes"]
    convolutions = [i for i, node in enumerate(nodes) if node["op"] == "Convolution"]
    names = []
    if "stem" in keep_fp32 and convolutions:
        ancestors, stack = set(), [convolutions[0]]
        while stack:
            index = stack.pop()
            if index not in ancestors:
                ancestors.add(index)
                stack.extend(entry[0] for entry in nodes[index]["inputs"])
        names += [nodes[i]["name"] for i in sorted(ancestors) if nodes[i]["op"] != "null"]
    if "classifier" in keep_fp32 and convolutions:
        names.append(nodes[convolutions[-1]]["name"])
    for part, marker in (("image_pooling", "imagepooling"), ("vortex_pooling", "boxaverage")):
        if part in keep_fp32:
            names += [node["name"] for node in nodes if node["op"] != "null" and marker in node["name"]]
    return list(dict.fromkeys(names))


def calibration_images(dataset, count: int) -> mx.nd.NDArray:
    """``count`` images spread evenly over ``dataset`` (which yields ``(image (3, H, W) normalised, label)``),
    zero-padded at the bottom and right to the largest size among them -> ``(count, 3, H, W)``.

    One batch shape is what quantization's calibration binds; zero is the mean colour after
    normalisation, so the padding adds no extreme values to the ranges being measured.
    """
    if count < 1 or len(dataset) == 0:
        raise PrecisionError(f"int8 calibration needs at least one image, got {count} of {len(dataset)}")
    indices = np.unique(np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int))
    images = [np.asarray(dataset[int(i)][0], dtype=np.float32) for i in indices]
    height, width = max(im.shape[1] for im in images), max(im.shape[2] for im in images)
    batch = np.zeros((len(images), 3, height, width), dtype=np.float32)
    for slot, image in zip(batch, images):
        slot[:, :image.shape[1], :image.shape[2]] = image
    return mx.nd.array(batch)


def _calibration_iter(source: Optional[CalibrationSource]) -> Tuple[mx.io.NDArrayIter, int]:
    if source is None:
        raise PrecisionError("int8 needs calibration images (none given and no calibrated model cached)")
    if callable(source):
        source = source()
    batches = [source] if isinstance(source, mx.nd.NDArray) else list(source)
    shapes = {tuple(batch.shape[1:]) for batch in batches}
    if not batches or len(shapes) != 1:
        raise PrecisionError(f"int8 calibration images must share one (3, H, W) shape, got {sorted(shapes)}")
    images = mx.nd.concat(*[batch.as_in_context(mx.cpu()) for batch in batches], dim=0)
    return mx.io.NDArrayIter(images, batch_size=1, data_name=INPUT_NAME), images.shape[0]


class _LayerRangeCollector:
    """What calibration measures of each node output of the fp32 graph, in MXNet's "customize" form.

    ``naive``: the minimum and maximum. ``entropy``: a histogram, from which the thresholds that
    minimise the KL divergence are computed by MXNet's own code, the way its ``auto`` mode does it:
    layers that never go negative keep the range [0, threshold]. MXNet's entropy mode with int8
    activations gives every layer (-threshold, threshold), ReLU outputs included, which oneDNN
    stores as uint8 all the same, and the next convolution fails ("Expect int8 when data_min < 0.0").
    Each output is read with one ``asnumpy``; MXNet's collectors start an engine operation per
    layer and wait for it, which made calibration 4x slower (12.4 s against 2.8 s, tiny model).
    """

    HISTOGRAM_BINS = 8001  # as MXNet's entropy calibration

    def __init__(self, mode: str):
        self.mode = mode
        self.ranges, self.histograms, self._thresholds = {}, {}, None

    def collect(self, name, handle) -> None:
        from mxnet.base import NDArrayHandle, py_str

        name = py_str(name)
        if not name.endswith("_output"):  # the monitor also reports inputs and weights
            return
        values = mx.nd.NDArray(ctypes.cast(handle, NDArrayHandle), writable=False).asnumpy()
        low, high = float(values.min()), float(values.max())
        if self.mode == "naive":
            previous = self.ranges.get(name, (low, high))
            self.ranges[name] = (min(previous[0], low), max(previous[1], high))
            return
        from mxnet.contrib.quantization import combine_histogram

        threshold = max(abs(low), abs(high), 1e-8)
        if name in self.histograms:
            self.histograms[name] = combine_histogram(self.histograms[name], values, low, high, threshold)
        else:
            counts, edges = np.histogram(values, bins=self.HISTOGRAM_BINS, range=(-threshold, threshold))
            self.histograms[name] = (counts, edges, low, high, threshold)

    @property
    def min_max_dict(self) -> dict:
        """``{output name: (min, max)}`` to quantize with."""
        if self.mode == "naive":
            return self.ranges
        from mxnet.contrib.quantization import _get_optimal_thresholds

        if self._thresholds is None:  # computed once: MXNet empties the histograms as it goes
            self._thresholds = _get_optimal_thresholds(self.histograms, "auto")
        return self._thresholds


def _cache_files(prefix: Path) -> Tuple[Path, Path, Path]:
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params"), Path(f"{prefix}-meta.json")


def load_symbol_pair(symbol_file: Path, params_file: Path, ctx: mx.Context) -> SymbolBlock:
    """A symbol + params pair as a ``SymbolBlock`` with input ``data`` (as plain MXNet loads it), hybridized."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SymbolBlock warns about parameter name prefixes
        block = SymbolBlock.imports(str(symbol_file), [INPUT_NAME], str(params_file), ctx=ctx)
    block.hybridize(static_alloc=True)
    return block


def _static_int8(symbol: mx.sym.Symbol, block: SymbolBlock, x: mx.nd.NDArray) -> SymbolBlock:
    """The int8 graph as a static executor for ``x``'s shape, sharing ``block``'s parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        static = SymbolBlock(symbol, mx.sym.var(INPUT_NAME), params=block.collect_params())
    static.hybridize(static_alloc=True, static_shape=True)
    return static


def _int8(net, ctx, calibration_batches, calib_mode, cache_prefix, keep_fp32, notes) -> Tuple[mx.sym.Symbol,
                                                                                              SymbolBlock]:
    """The int8 graph and a block holding its parameters: from the cache, or calibrated now (and
    cached when ``cache_prefix`` is given)."""
    from mxnet.contrib.quantization import quantize_net_v2

    if cache_prefix is not None:
        symbol_file, params_file, meta_file = _cache_files(cache_prefix)
        if symbol_file.is_file() and params_file.is_file() and meta_file.is_file():
            notes.append(f"int8 model from the cache {cache_prefix}")
            return mx.sym.load(str(symbol_file)), load_symbol_pair(symbol_file, params_file, ctx)
    main = main_logits_block(net)
    excluded = int8_excluded_layers(main(mx.sym.var(INPUT_NAME)), keep_fp32)
    calib_data, num_images = _calibration_iter(calibration_batches)
    calib_shape = list(calib_data.provide_data[0].shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # int8, not "auto" (uint8 after ReLUs): with uint8 the demo model lost 6 mIoU points whatever was
        # kept in fp32, with int8 and the stem in fp32 0.2 (docs/performance.md)
        quantized = quantize_net_v2(main, quantized_dtype="int8", exclude_layers=excluded, calib_data=calib_data,
                                    calib_mode="customize", LayerOutputCollector=_LayerRangeCollector(calib_mode),
                                    num_calib_examples=num_images, ctx=mx.cpu())
    quantized.hybridize()
    quantized(mx.nd.zeros((1, 3, 64, 64)))  # export() writes the parameters of the graph a forward pass built
    notes.append(f"int8 calibrated ({calib_mode}) on {num_images} image{'s' if num_images != 1 else ''} of "
                 f"{calib_shape[2]}x{calib_shape[1]}; kept in fp32: {', '.join(keep_fp32) or 'nothing'}")
    settings = {"calib_mode": calib_mode, "calib_images": num_images, "calib_shape": calib_shape,
                "int8_keep_fp32": list(keep_fp32), "excluded_layers": excluded}
    if cache_prefix is not None:
        try:
            _write_cache(quantized, cache_prefix, settings)
            notes.append(f"cached as {cache_prefix}-symbol.json and -0000.params")
            symbol_file, params_file, _ = _cache_files(cache_prefix)
            return mx.sym.load(str(symbol_file)), load_symbol_pair(symbol_file, params_file, ctx)
        except OSError as err:
            notes.append(f"could not cache the int8 model at {cache_prefix} ({err}); it will be calibrated again")
    with tempfile.TemporaryDirectory(prefix="deeplab-int8-") as scratch:  # the same files, not kept
        prefix = Path(scratch) / "int8"
        _write_cache(quantized, prefix, settings)
        symbol_file, params_file, _ = _cache_files(prefix)
        return mx.sym.load(str(symbol_file)), load_symbol_pair(symbol_file, params_file, ctx)


def _write_cache(block: HybridBlock, prefix: Path, settings: dict) -> None:
    """Export to ``prefix`` atomically: both graph files are renamed into place before the meta file,
    whose presence marks a complete cache entry."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f".{prefix.name}.{os.getpid()}.partial")
    block.export(str(staging), epoch=0)
    for staged, final in zip(_cache_files(staging)[:2], _cache_files(prefix)[:2]):
        os.replace(staged, final)
    meta = {"precision": "int8", "recipe": INT8_RECIPE, "mxnet": mx.__version__, **settings,
            "load_with": f"mxnet.gluon.SymbolBlock.imports('{prefix.name}-symbol.json', ['{INPUT_NAME}'], "
                         f"'{prefix.name}-0000.params')",
            "input": "(N, 3, H, W) float32, RGB normalised (pixel / 255 - mean) / std, any H and W",
            "output": "(N, num_classes, H, W) float32 logits"}
    _cache_files(prefix)[2].write_text(json.dumps(meta, indent=1) + "\n")


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest (SHA-256, or another ``hashlib`` algorithm) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def int8_cache_prefix(checkpoint: Path, output_stride: int, calib_mode: str, calib_images: int,
                      calib_source: str, keep_fp32: Sequence[str] = INT8_KEEP_FP32) -> Path:
    """Where the calibrated int8 model of a checkpoint is cached: beside the checkpoint, named
    ``<checkpoint>.int8-os<N>-<mode><images>-<key>`` where ``key`` hashes everything the calibrated
    model depends on (the checkpoint's bytes, output stride, calibration mode, image count and
    source, the parts kept in fp32, the recipe and MXNet's version), so any change calibrates anew.
    ``calib_source`` names the calibration images, e.g. ``"toy data/toy train"``.
    """
    checkpoint = Path(checkpoint)
    key = json.dumps({"checkpoint_sha256": file_digest(checkpoint), "output_stride": int(output_stride),
                      "calib_mode": calib_mode, "calib_images": int(calib_images), "calib_source": calib_source,
                      "keep_fp32": sorted(keep_fp32), "recipe": INT8_RECIPE, "mxnet": mx.__version__},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return checkpoint.with_name(f"{checkpoint.name}.int8-os{output_stride}-{calib_mode}{calib_images}-{digest}")



# ------------------------------------------------------------------------------------ from a checkpoint

@dataclass
class InferenceFlags(ThreadsFlag):
    """The flags evaluate, predict and export share, declared once: their configs inherit them (evaluate
    redeclares ``checkpoint`` and ``output_stride`` in its checkpoint-mode group, ``checkpoint`` optional)."""

    checkpoint: Optional[Path] = field(default=None, metadata=flag(
        "a .ckpt file, or a run folder (its latest checkpoint)", required=True))
    output_stride: Optional[int] = field(default=None, metadata=flag(
        "rebuild the network at this output stride (same weights); default: the trained one",
        choices=OUTPUT_STRIDES))
    precision: str = field(default="fp32", metadata=flag(
        "fp32 (oneDNN-fused on the CPU), bf16 (CPUs with AVX512-BF16 or AMX; elsewhere fp32, with a note) or int8 "
        "(oneDNN, calibrated once on --calib_images images and cached beside the checkpoint)", choices=PRECISIONS,
        group="precision"))
    calib_images: int = field(default=32, metadata=flag(
        "int8: how many images calibrate the value ranges", group="precision"))
    calib_mode: str = field(default="naive", metadata=flag(
        "int8: naive (each layer's min/max) or entropy (KL-optimal thresholds)", choices=CALIB_MODES,
        group="precision"))
    calib_dir: Optional[Path] = field(default=None, metadata=flag(
        "int8: a folder of images to calibrate on; default: the checkpoint's training split", group="precision"))

    def precision_problems(self) -> List[str]:
        """One-line problems with these flags, found without opening any file but ``--calib_dir``."""
        problems = []
        # the calibration flags only matter to int8: with fp32/bf16 they would silently do nothing
        if self.precision != "int8" and (unused := [name for name in changed_flags(self, ("precision",))
                                                    if name != "--precision"]):
            problems.append(f"{unused[0]} is used by --precision int8 only (this run is {self.precision})")
        if self.calib_images < 1:
            problems.append(f"--calib_images must be at least 1, got {self.calib_images}")
        if self.calib_dir is not None and not self.calib_dir.is_dir():
            problems.append(f"--calib_dir {self.calib_dir} is not a folder")
        return problems


def calibration_source(checkpoint, flags: InferenceFlags, dataset: Optional[str] = None,
                       data_dir: Optional[Path] = None) -> Tuple[str, Callable[[], mx.nd.NDArray]]:
    """Where int8 calibration images come from: ``(description, loader)``. The description (part of
    the cache key) is known at once; the loader reads the images only if calibration runs.

    ``--calib_dir``, else the training split of ``dataset``/``data_dir`` (default: the checkpoint's).
    The loader raises :class:`~deeplab_gluon.cli.UsageError` when the images are not there.
    """
    from .data import DataError, EvalTransform, default_train_split, get_dataset, normalize_image, read_image
    from .data.folder import IMAGE_SUFFIXES

    if flags.calib_dir is not None:
        folder = Path(flags.calib_dir)

        def from_folder():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UsageError(f"--calib_dir {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            # a dataset of (normalised image (3, H, W), None): a file is read only when it is picked
            images = mx.gluon.data.SimpleDataset(files).transform(lambda f: (normalize_image(read_image(f)), None))
            return calibration_images(images, flags.calib_images)

        return f"folder {folder.resolve()}", from_folder
    trained = checkpoint.meta.get("config") or {}
    dataset = dataset or trained.get("dataset")
    data_dir = data_dir or trained.get("data_dir")
    split = trained.get("train_split") or (default_train_split(dataset, data_dir) if dataset and data_dir else "")

    def from_dataset():
        if not dataset or not data_dir:  # e.g. a converted gluoncv checkpoint
            raise UsageError(f"--precision int8 calibrates on the checkpoint's training images, but "
                             f"{checkpoint.path.name} records no training data folder; give --calib_dir with "
                             f"images like the ones to segment")
        extra = {"num_classes": checkpoint.spec.num_classes} if dataset == "folder" else {}
        try:
            images = get_dataset(dataset, data_dir, split, transform=EvalTransform(), **extra)
        except (DataError, ValueError) as err:
            raise UsageError(f"--precision int8 calibrates on the checkpoint's training images ({dataset} {data_dir} "
                             f"{split}), which cannot be read here ({err}); give --calib_dir with images like the "
                             f"ones to segment") from None
        return calibration_images(images, flags.calib_images)

    return f"{dataset} {data_dir} {split}", from_dataset


def prepare_checkpoint(checkpoint, ctxs, output_stride: Optional[int] = None, flags: Optional[InferenceFlags] = None,
                       dataset: Optional[str] = None, data_dir: Optional[Path] = None,
                       net: Optional[HybridBlock] = None) -> InferenceNetwork:
    """A :class:`~deeplab_gluon.checkpoint.Checkpoint`'s network ready to run in ``flags.precision``
    (see :func:`optimize_for_inference`) on ``ctxs`` (a context or a list).

    Several devices run the plain hybridized fp32 network on each (bf16 and int8 are refused there:
    one CPU context already uses every core). ``dataset``/``data_dir``: int8 calibration data other
    than the checkpoint's own (see :func:`calibration_source`). ``net``: the checkpoint's network already
    loaded on the one context at ``output_stride`` (export keeps it as its fp32 reference), else loaded here.
    """

    flags = flags or InferenceFlags()
    ctxs = list(ctxs) if isinstance(ctxs, (list, tuple)) else [ctxs or mx.cpu()]
    if len(ctxs) > 1:
        if flags.precision != "fp32":
            raise UsageError(f"--precision {flags.precision} runs on one device: drop --gpus (one CPU context uses "
                             f"every core)")
        return InferenceNetwork(checkpoint.load(ctxs, output_stride), "fp32", "fp32",
                                [f"plain hybridized graph on each of {len(ctxs)} devices"])
    net = net or checkpoint.load(ctxs[0], output_stride)
    calibration, cache = None, None
    if flags.precision == "int8":
        source, calibration = calibration_source(checkpoint, flags, dataset, data_dir)
        cache = int8_cache_prefix(checkpoint.path, output_stride or checkpoint.spec.output_stride, flags.calib_mode,
                                  flags.calib_images, source)
    return optimize_for_inference(net, flags.precision, ctxs[0], calibration_batches=calibration,
                                  calib_mode=flags.calib_mode, cache_prefix=cache)


def load_model(path, ctx=None, output_stride: Optional[int] = None, precision: Optional[str] = None, **calibration):
    """The trained network in a checkpoint file or run folder, ready for inference:
    ``Checkpoint.open(path).load(ctx, output_stride)``; with ``precision`` (``fp32``, ``bf16`` or
    ``int8``, and for int8 ``calib_images``, ``calib_mode``, ``calib_dir``) the network prepared by
    :func:`prepare_checkpoint`, which returns the main logits only.

    Lives here, above :mod:`~deeplab_gluon.checkpoint`, because it reaches the precision engine; the
    checkpoint module stays below serving (docs/architecture.md)."""
    checkpoint = Checkpoint.open(path)
    if precision is None:
        return checkpoint.load(ctx, output_stride)
    return prepare_checkpoint(checkpoint, ctx, output_stride, InferenceFlags(precision=precision, **calibration))
