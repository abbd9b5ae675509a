"""Export a checkpoint for deployment: MXNet symbol + params, and ONNX.

    python -m deeplab_gluon.export --checkpoint runs/demo/phase2 --output_dir runs/demo/export

writes, with ``<prefix>`` = ``<output_dir>/deeplabv3_<backbone>_<head>_os<N>``:

  <prefix>-symbol.json, <prefix>-0000.params   load with mxnet.gluon.SymbolBlock.imports(json, ["data"], params)
  <prefix>.onnx                                 input "data" (N, 3, H, W), output "logits" (N, C, H, W)
  <prefix>-meta.json                            classes, normalisation, shapes, source checkpoint

Both graphs take a normalised RGB batch ``(image / 255 - mean) / std`` of any size and return the
logits at the input's size; arg-max over axis 1 gives the class map. The ONNX model has dynamic batch,
height and width unless ``--dynamic 0`` fixes them to 1 x ``--input_size``. With ``--check 1`` (default)
both exports are run on an image of another size than the traced one and compared with the Gluon model.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np

from .cli import JobError, checkpoint_flag, flag, output_problem, run_job
from .inference import main_logits
from .precision import INPUT_NAME, InferenceFlags, load_symbol_pair, prepare_checkpoint
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

PROG = "export"
FORMATS = ("symbol", "onnx")
OUTPUT_NAME = "logits"
ONNX_HINT = 'pip install "deeplab_gluon[export]" (onnx==1.15.0, onnxruntime==1.18.1)'


def _formats(text: str) -> Tuple[str, ...]:
    parts = tuple(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    unknown = [part for part in parts if part not in FORMATS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)} (comma-separated), got {text!r}")
    return parts


@dataclass
class ExportConfig(InferenceFlags):
    """Command-line settings of ``python -m deeplab_gluon.export``."""

    output_dir: Optional[Path] = field(default=None, metadata=flag("where the files go (created)", required=True))
    format: Optional[Tuple[str, ...]] = field(default=None, metadata=flag(
        "symbol, onnx or symbol,onnx; default: both for fp32, symbol for bf16 and int8 (ONNX has no graph for "
        "them)", parse=_formats))
    input_size: Tuple[int, int] = field(default=(512, 512), metadata=flag(
        "traced input size; the ONNX input size with --dynamic 0", metavar=("H", "W")))
    dynamic: bool = field(default=True, metadata=flag("ONNX with dynamic batch, height and width"))
    check: bool = field(default=True, metadata=flag("run the exports on another size and compare with Gluon"))

    @property
    def formats(self) -> Tuple[str, ...]:
        """The formats to write: ``--format``, else what the precision allows."""
        return self.format or (FORMATS if self.precision == "fp32" else ("symbol",))

    def problems(self) -> List[str]:
        problems = self.precision_problems()
        if self.precision != "fp32" and "onnx" in self.formats:
            problems.append(f"--format onnx writes fp32 only (ONNX has no graph for MXNet's {self.precision}); "
                            f"pass --format symbol")
        if not self.dynamic and "onnx" not in self.formats:
            problems.append("--dynamic shapes the ONNX model only; --format has no onnx")
        if min(self.input_size) < 1:
            problems.append(f"--input_size must be positive, got {self.input_size[0]} {self.input_size[1]}")
        problems.append(output_problem(self.output_dir, "--output_dir", folder=True))
        if "onnx" in self.formats:
            for package in ("onnx",) + (("onnxruntime",) if self.check else ()):
                try:
                    __import__(package)
                except ImportError:
                    problems.append(f"--format onnx needs the {package} package: {ONNX_HINT}"
                                    + ("; or pass --check 0" if package == "onnxruntime" else ""))
        return [problem for problem in problems if problem]


def export_symbol(net: mx.gluon.HybridBlock, prefix: Path, input_shape: Sequence[int]) -> Tuple[Path, Path]:
    """Trace ``net`` on a zero batch of ``input_shape`` (N, 3, H, W) and write ``<prefix>-symbol.json``
    and ``<prefix>-0000.params``; returns their paths.

    A network with an auxiliary head has two outputs; only the main logits are kept (and only the
    weights they use), since the auxiliary head only serves training.
    """
    net.hybridize(static_alloc=True)
    net(mx.nd.zeros(tuple(input_shape)))
    net.export(str(prefix), epoch=0, remove_amp_cast=False)  # a bf16 graph needs its casts
    symbol_file, params_file = Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")
    symbol = mx.sym.load(str(symbol_file))
    if len(symbol.list_outputs()) > 1:
        logits = symbol[0]
        used = {f"arg:{n}" for n in logits.list_arguments()} | {f"aux:{n}" for n in logits.list_auxiliary_states()}
        params = {key: value for key, value in mx.nd.load(str(params_file)).items() if key in used}
        logits.save(str(symbol_file))
        mx.nd.save(str(params_file), params)
    return symbol_file, params_file


def _rename_output(model, new_name: str) -> None:
    """Give the graph's single output a stable name (the exporter names it after the last MXNet node)."""
    old_name = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [new_name if name == old_name else name for name in node.output]
        node.input[:] = [new_name if name == old_name else name for name in node.input]
    model.graph.output[0].name = new_name


def export_onnx(symbol_file: Path, params_file: Path, onnx_file: Path, input_shape: Sequence[int],
                dynamic: bool = True) -> Path:
    """Convert the symbol export to ONNX with ``mx.onnx.export_model``.

    ``input_shape`` (N, 3, H, W) is the traced shape; with ``dynamic`` the model's input is
    (batch, 3, height, width) with all three free. The weights are stored as initializers only (the
    exporter also lists them as graph inputs, which keeps runtimes from folding constants), the input is
    named ``data`` and the output ``logits``.
    """
    import onnx

    from .onnx_ops import register_resize_like

    register_resize_like()
    extra = {"dynamic": True, "dynamic_input_shapes": [(None, 3, None, None)]} if dynamic else {}
    mx.onnx.export_model(str(symbol_file), str(params_file), [tuple(input_shape)], np.float32, str(onnx_file), **extra)
    model = onnx.load(str(onnx_file))
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    _rename_output(model, OUTPUT_NAME)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_file))
    return onnx_file


def run_symbol(symbol_file: Path, params_file: Path, batch: np.ndarray) -> np.ndarray:
    """Logits of the symbol export for a normalised (N, 3, H, W) batch, through ``SymbolBlock`` alone."""
    return load_symbol_pair(symbol_file, params_file, mx.cpu())(mx.nd.array(batch)).asnumpy()


def run_onnx(onnx_file: Path, batch: np.ndarray) -> np.ndarray:
    """Logits of the ONNX export for a normalised (N, 3, H, W) batch, with onnxruntime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: batch.astype(np.float32)})[0]


def check_shape(input_size: Tuple[int, int], dynamic: bool) -> Tuple[int, int, int, int]:
    """A batch shape the export has not been traced with (unless the ONNX model is fixed-size)."""
    height, width = input_size
    return (1, 3, height, width) if not dynamic else (2, 3, height + 13, width + 29)


def run_export(config: ExportConfig) -> int:
    checkpoint = checkpoint_flag(config.checkpoint)  # a one-line usage error before any work
    spec = checkpoint.spec.replace(output_stride=config.output_stride or checkpoint.spec.output_stride)
    net = checkpoint.load(mx.cpu(), output_stride=spec.output_stride)
    converted = None  # bf16 / int8: the converted graph is what is exported and checked
    if config.precision != "fp32":
        converted = prepare_checkpoint(checkpoint, mx.cpu(), spec.output_stride, config, net=net)
        print(converted.describe())
        converted = converted if converted.graph is not None else None  # fell back to fp32
    precision = converted.precision if converted else "fp32"
    config.output_dir.mkdir(parents=True, exist_ok=True)
    name = f"{spec.name}_os{spec.output_stride}" + ("" if precision == "fp32" else f"_{precision}")  # <prefix>
    traced = (1, 3) + tuple(config.input_size)
    # ONNX is converted from the symbol files: without --format symbol they are made aside
    scratch = None if "symbol" in config.formats else Path(tempfile.mkdtemp(prefix="deeplab-export-"))
    symbol_dir = scratch or config.output_dir
    try:
        symbol_file, params_file = export_symbol(converted.graph if converted else net, symbol_dir / name, traced)
        written = [symbol_file, params_file] if scratch is None else []
        onnx_file = None
        if "onnx" in config.formats:
            onnx_file = export_onnx(symbol_file, params_file, config.output_dir / f"{name}.onnx", traced,
                                    config.dynamic)
            written.append(onnx_file)
        meta_file = config.output_dir / f"{name}-meta.json"
        meta_file.write_text(json.dumps({
            "checkpoint": str(checkpoint.path), "iteration": checkpoint.iteration, "model": spec.to_dict(),
            "precision": precision, "precision_notes": converted.notes if converted else [],
            "output_stride": spec.output_stride, "classes": checkpoint.classes, "palette": checkpoint.meta.get("palette"),
            "ignore_label": checkpoint.meta.get("ignore_label"),
            "input": {"name": INPUT_NAME, "layout": "NCHW", "channels": "RGB",
                      "normalisation": "(pixel / 255 - mean) / std", "mean": list(IMAGENET_MEAN),
                      "std": list(IMAGENET_STD), "traced_shape": list(traced),
                      "onnx_shape": ["batch", 3, "height", "width"] if config.dynamic else list(traced)},
            "output": {"name": OUTPUT_NAME, "shape": "(N, num_classes, H, W) logits at the input size"},
            "formats": list(config.formats),
        }, indent=1) + "\n")
        written.append(meta_file)
        for path in written:
            print(f"wrote {path}")
        if config.check:
            shape = check_shape(config.input_size, config.dynamic)
            batch = np.random.RandomState(0).normal(size=shape).astype(np.float32)
            reference = main_logits(net(mx.nd.array(batch))).asnumpy()
            if converted:
                fp32, reference = reference, converted(mx.nd.array(batch)).asnumpy()
                agreement = float(np.mean(fp32.argmax(axis=1) == reference.argmax(axis=1)))
                print(f"{precision} and fp32 give the same class on {100 * agreement:.1f}% of the pixels of a random "
                      f"{'x'.join(map(str, shape))} input")
            results = {kind: run_symbol(symbol_file, params_file, batch) if kind == "symbol" else
                       run_onnx(onnx_file, batch) for kind in FORMATS if kind in config.formats}  # symbol first
            scale = float(np.abs(reference).max()) or 1.0
            for kind, output in results.items():
                difference = float(np.abs(output - reference).max())
                print(f"check {kind}: input {'x'.join(map(str, shape))}, max |difference| to {precision} in Gluon "
                      f"{difference:.2e} (logits up to {scale:.3g})")
                if output.shape != reference.shape or difference > 1e-4 * scale + 1e-4:
                    raise JobError(f"the {kind} export differs from the Gluon model by {difference:.3g} "
                                     f"on a {shape} input; please report this")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, ExportConfig, run_export, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
