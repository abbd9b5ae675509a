"""Symbol and ONNX exports reproduce the Gluon model, on sizes they were not traced with."""
import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon.export import export_onnx, export_symbol, main, run_symbol
from deeplab_gluon.inference import main_logits
from tiny_model import save_tiny_checkpoint, tiny_net

TRACED = (1, 3, 64, 64)
UNSEEN = (2, 3, 75, 93)  # another batch size, height and width than the traced ones


def gluon_logits(net, batch):
    return main_logits(net(mx.nd.array(batch))).asnumpy()


def assert_close(got, expected):
    # Logits of the soft test nets are O(1); the tolerance scales with them all the same.
    scale = np.abs(expected).max()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(scale, 1.0))


@pytest.fixture(scope="module")
def aux_net():
    return tiny_net(num_classes=3, head="aspp", aux=True, seed=5, logit_scale=0.1)


def test_symbol_export_runs_at_an_unseen_size_and_drops_the_aux_head(aux_net, tmp_path):
    symbol_file, params_file = export_symbol(aux_net, tmp_path / "net", TRACED)
    assert symbol_file.name == "net-symbol.json" and params_file.name == "net-0000.params"
    symbol = mx.sym.load(str(symbol_file))
    assert len(symbol.list_outputs()) == 1  # the auxiliary head's output is gone, and its weights
    saved = mx.nd.load(str(params_file))
    aux_head = {param.name for param in aux_net.aux_head.collect_params().values()}
    assert not aux_head & {key.split(":", 1)[1] for key in saved}
    assert set(saved) == {f"arg:{n}" for n in symbol.list_arguments() if n != "data"} | \
        {f"aux:{n}" for n in symbol.list_auxiliary_states()}
    batch = np.random.RandomState(0).normal(size=UNSEEN).astype(np.float32)
    assert_close(run_symbol(symbol_file, params_file, batch), gluon_logits(aux_net, batch))


def test_onnx_export_is_dynamic_and_matches_gluon(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from deeplab_gluon.export import run_onnx

    # Vortex module B at OS8 has every op of the graph: dilated convs, image pooling's broadcast_like,
    # count_include_pad=False poolings, padded slices; the ASPP head is exported in the command-line test.
    net = tiny_net(num_classes=4, head="vortex", output_stride=8, vortex_module="B", seed=6)
    symbol_file, params_file = export_symbol(net, tmp_path / "net", TRACED)
    onnx_file = export_onnx(symbol_file, params_file, tmp_path / "net.onnx", TRACED, dynamic=True)
    import onnx

    model = onnx.load(str(onnx_file))
    assert [i.name for i in model.graph.input] == ["data"] and [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and not any(dims[i].HasField("dim_value") for i in (0, 2, 3))  # N, H, W free
    for shape in (TRACED, UNSEEN):
        batch = np.random.RandomState(1).normal(size=shape).astype(np.float32)
        assert_close(run_onnx(onnx_file, batch), gluon_logits(net, batch))


def test_fixed_size_onnx_and_the_builtin_resize_still_convert(tmp_path):
    pytest.importorskip("onnxruntime")
    from deeplab_gluon.export import run_onnx

    # BilinearResize2D with a fixed size goes to MXNet's own converter, through ours
    data = mx.sym.var("data")
    resized = mx.sym.contrib.BilinearResize2D(data, height=11, width=7)
    mx.sym.Group([resized]).save(str(tmp_path / "resize-symbol.json"))
    mx.nd.save(str(tmp_path / "resize-0000.params"), {})
    onnx_file = export_onnx(tmp_path / "resize-symbol.json", tmp_path / "resize-0000.params", tmp_path / "r.onnx",
                            (1, 2, 5, 6), dynamic=False)
    batch = np.random.RandomState(2).normal(size=(1, 2, 5, 6)).astype(np.float32)
    expected = mx.nd.contrib.BilinearResize2D(mx.nd.array(batch), height=11, width=7).asnumpy()
    np.testing.assert_allclose(run_onnx(onnx_file, batch), expected, rtol=1e-5, atol=1e-5)


def test_command_line_writes_everything_and_checks_it(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    net = tiny_net(num_classes=3, head="aspp", aux=True, seed=7)
    checkpoint = save_tiny_checkpoint(tmp_path / "run", net, ["sky", "road", "car"], aux=True, iteration=5)
    out = tmp_path / "export"
    code = main(["--checkpoint", str(tmp_path / "run"), "--output_dir", str(out), "--input_size", "48", "40"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    prefix = out / "deeplabv3_resnet18_v2_aspp_os16"
    for suffix in ("-symbol.json", "-0000.params", ".onnx", "-meta.json"):
        assert f"wrote {prefix}{suffix}" in captured.out
    assert "check symbol: input 2x3x61x69" in captured.out and "check onnx: input 2x3x61x69" in captured.out
    meta = json.loads((out / f"{prefix.name}-meta.json").read_text())
    assert meta["classes"] == ["sky", "road", "car"] and meta["checkpoint"] == str(checkpoint)
    assert meta["input"]["onnx_shape"] == ["batch", 3, "height", "width"] and meta["iteration"] == 5

    # Loadable with MXNet and onnxruntime alone: a fresh interpreter where this package cannot be imported.
    batch = np.random.RandomState(3).normal(size=(1, 3, 50, 58)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["deeplab_gluon"] = None  # any import of it now fails
        import numpy as np, mxnet as mx, onnxruntime
        x = np.load({str(tmp_path / 'batch.npy')!r})
        block = mx.gluon.SymbolBlock.imports({str(prefix) + '-symbol.json'!r}, ["data"], {str(prefix) + '-0000.params'!r})
        np.save({str(tmp_path / 'symbol.npy')!r}, block(mx.nd.array(x)).asnumpy())
        session = onnxruntime.InferenceSession({str(prefix) + '.onnx'!r}, providers=["CPUExecutionProvider"])
        np.save({str(tmp_path / 'onnx.npy')!r}, session.run(["logits"], {{"data": x}})[0])
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = gluon_logits(net, batch)
    assert_close(np.load(tmp_path / "symbol.npy"), expected)
    assert_close(np.load(tmp_path / "onnx.npy"), expected)


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "{t}/none"], "export: error: --checkpoint: no checkpoint at {t}/none"),
    (["--checkpoint", "{t}", "--format", "tflite"], "export: error: argument --format: choose from symbol, onnx"),
    (["--checkpoint", "{t}", "--input_size", "0", "5"], "export: error: --input_size must be positive, got 0 5"),
    (["--checkpoint", "{t}", "--output_stride", "4"], "export: error: argument --output_stride: invalid choice: 4"),
    # issue 28 item 2: flags the chosen mode does not use were silently ignored
    (["--checkpoint", "{t}", "--format", "symbol", "--dynamic", "0"],
     "export: error: --dynamic shapes the ONNX model only; --format has no onnx"),
    (["--checkpoint", "{t}", "--calib_images", "8"],
     "export: error: --calib_images is used by --precision int8 only (this run is fp32)"),
    (["--checkpoint", "{t}", "--precision", "bf16", "--calib_mode", "entropy"],
     "export: error: --calib_mode is used by --precision int8 only (this run is bf16)"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, args, message):
    args = [a.format(t=tmp_path) for a in args] + ["--output_dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(t=tmp_path)) and err.count("\n") == 1


def test_a_numerical_mismatch_is_a_failure_not_a_usage_error(tmp_path, capsys, monkeypatch):
    import deeplab_gluon.export as export

    save_tiny_checkpoint(tmp_path / "run", tiny_net(num_classes=3), ["a", "b", "c"])
    real = export.run_symbol
    monkeypatch.setattr(export, "run_symbol", lambda *args: real(*args) + 1.0)  # a broken export
    code = main(["--checkpoint", str(tmp_path / "run"), "--output_dir", str(tmp_path / "out"), "--format", "symbol",
                 "--input_size", "32", "32"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("export: error: the symbol export differs from the Gluon model by 1")


def test_decoder_network_exports_to_symbol_and_dynamic_onnx(tmp_path):
    """DeepLabV3+ adds a second run-time-sized resize (to the stride-4 map); MobileNetV2 adds ReLU6 and
    depthwise convs. Both exports still take any size."""
    pytest.importorskip("onnxruntime")
    from deeplab_gluon.export import run_onnx
    from deeplab_gluon.models import get_deeplab

    mx.random.seed(8)
    net = get_deeplab("mobilenetv2_1.0", "vortex", 16, num_classes=3, decoder=True)
    net.hybridize()
    symbol_file, params_file = export_symbol(net, tmp_path / "plus", TRACED)
    onnx_file = export_onnx(symbol_file, params_file, tmp_path / "plus.onnx", TRACED, dynamic=True)
    batch = np.random.RandomState(2).normal(size=UNSEEN).astype(np.float32)
    expected = gluon_logits(net, batch)
    assert_close(run_symbol(symbol_file, params_file, batch), expected)
    assert_close(run_onnx(onnx_file, batch), expected)
