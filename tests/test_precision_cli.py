"""--precision fp32|bf16|int8 from evaluate, predict and export, on a trained tiny model whose checkpoint
names a folder dataset of colour-blob scenes (so int8 calibrates on the checkpoint's own training images)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from deeplab_gluon import evaluate, export, load_model, predict
from deeplab_gluon.data import read_label, save_index_png, write_image
from deeplab_gluon.precision import cpu_has_bf16
from tiny_model import colour_blob_scene, save_tiny_checkpoint, trained_tiny_net

CLASSES = ["background", "red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A folder dataset (12 train, 8 val scenes of 48x48) and the trained tiny net's run folder."""
    root = tmp_path_factory.mktemp("precision_cli")
    data = root / "blobs"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    rng = np.random.default_rng(7)
    ids = [f"s{i:02d}" for i in range(20)]
    for scene_id in ids:
        image, label = colour_blob_scene(rng, 48)
        write_image(data / "images" / f"{scene_id}.png", image)
        save_index_png(data / "labels" / f"{scene_id}.png", label)
    (data / "train.txt").write_text("\n".join(ids[:12]) + "\n")
    (data / "val.txt").write_text("\n".join(ids[12:]) + "\n")
    (data / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    net, _, _ = trained_tiny_net()
    save_tiny_checkpoint(root / "run", net, CLASSES, dataset="folder", data_dir=data)
    return root


def _evaluate(run, capsys, *flags):
    output = run / f"eval{len(list(run.glob('eval*.json')))}.json"
    assert evaluate.main(["--checkpoint", str(run / "run"), "--progress", "0", "--output", str(output), *flags]) == 0
    return json.loads(output.read_text()), capsys.readouterr().out


def test_evaluate_scores_int8_within_reach_of_fp32_and_reuses_the_calibration(run, capsys):
    fp32, out = _evaluate(run, capsys)
    assert fp32["settings"]["precision"] == "fp32" and "precision fp32" in out
    int8, out = _evaluate(run, capsys, "--precision", "int8", "--calib_images", "6")
    assert int8["settings"]["precision"] == "int8"
    assert "int8 calibrated (naive) on 6 images of 48x48" in out and "cached as" in out
    assert abs(int8["summary"]["mIoU"] - fp32["summary"]["mIoU"]) < 0.05, (int8["summary"], fp32["summary"])
    cached = list((run / "run" / "checkpoints").glob("*.int8-os16-naive6-*-symbol.json"))
    assert len(cached) == 1
    again, out = _evaluate(run, capsys, "--precision", "int8", "--calib_images", "6", "--scales", "0.75,1", "--flip")
    assert "int8 model from the cache" in out and "calibrated" not in out
    assert again["settings"]["scales"] == [0.75, 1.0] and again["settings"]["flip"] is True


def test_evaluate_bf16_runs_or_falls_back_with_a_note(run, capsys):
    bf16, out = _evaluate(run, capsys, "--precision", "bf16")
    if cpu_has_bf16():
        assert bf16["settings"]["precision"] == "bf16"
    else:
        assert bf16["settings"]["precision"] == "fp32" and "this CPU has no bfloat16 instructions" in out


def test_predict_int8_writes_the_class_maps_of_fp32_on_almost_every_pixel(run, tmp_path, capsys):
    images = run / "blobs" / "images"
    maps = {}
    for precision in ("fp32", "int8"):
        out_dir = tmp_path / precision
        assert predict.main(["--checkpoint", str(run / "run"), "--input", str(images), "--output_dir", str(out_dir),
                             "--precision", precision, "--progress", "0"]
                            + (["--calib_images", "6"] if precision == "int8" else [])) == 0
        maps[precision] = np.stack([read_label(out_dir / f"s{i:02d}.png") for i in range(20)])
    assert "precision int8" in capsys.readouterr().out
    assert (maps["fp32"] == maps["int8"]).mean() >= 0.97


def test_int8_calibrates_on_calib_dir_when_the_training_images_are_elsewhere(run, tmp_path, capsys):
    moved = tmp_path / "ckpt"
    save_tiny_checkpoint(moved, trained_tiny_net()[0], CLASSES, dataset="folder", data_dir=tmp_path / "gone")
    flags = ["--checkpoint", str(moved), "--input", str(run / "blobs" / "images" / "s00.png"),
             "--output_dir", str(tmp_path / "out"), "--precision", "int8", "--progress", "0"]
    assert predict.main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("predict: error: --precision int8 calibrates on the checkpoint's training images (folder ")
    assert "give --calib_dir" in err and len(err.strip().splitlines()) == 1
    assert predict.main(flags + ["--calib_dir", str(run / "blobs" / "images"), "--calib_images", "4"]) == 0
    assert "int8 calibrated (naive) on 4 images" in capsys.readouterr().out
    unrecorded = tmp_path / "converted"  # as a converted gluoncv checkpoint: no training data folder
    save_tiny_checkpoint(unrecorded, trained_tiny_net()[0], CLASSES, dataset="voc")
    flags[1] = str(unrecorded)
    assert predict.main(flags) == 2
    assert capsys.readouterr().err == ("predict: error: --precision int8 calibrates on the checkpoint's training "
                                       "images, but iter-0000007.ckpt records no training data folder; give "
                                       "--calib_dir with images like the ones to segment\n")


def test_export_int8_writes_a_pair_that_plain_mxnet_runs_like_the_package(run, tmp_path, capsys):
    out_dir = tmp_path / "export"
    assert export.main(["--checkpoint", str(run / "run"), "--output_dir", str(out_dir), "--precision", "int8",
                        "--calib_images", "6", "--input_size", "48", "48"]) == 0
    out = capsys.readouterr().out
    prefix = out_dir / "deeplabv3_resnet18_v2_aspp_os16_int8"
    assert "check symbol" in out and not (out_dir / f"{prefix.name}.onnx").exists()
    meta = json.loads((out_dir / f"{prefix.name}-meta.json").read_text())
    assert meta["precision"] == "int8" and meta["formats"] == ["symbol"]
    # without this package: a fresh interpreter that imports mxnet alone
    script = (f"import mxnet as mx, numpy as np\n"
              f"net = mx.gluon.SymbolBlock.imports('{prefix}-symbol.json', ['data'], '{prefix}-0000.params')\n"
              f"x = mx.nd.array(np.random.RandomState(0).normal(size=(1, 3, 40, 56)))\n"
              f"out = net(x)\nprint(out.shape, 'quantized' in open('{prefix}-symbol.json').read())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-5:] == ["(1,", "5,", "40,", "56)", "True"]


def test_export_refuses_onnx_for_int8_in_one_line(run, tmp_path, capsys):
    assert export.main(["--checkpoint", str(run / "run"), "--output_dir", str(tmp_path), "--precision", "int8",
                        "--format", "onnx"]) == 2
    assert capsys.readouterr().err.strip() == ("export: error: --format onnx writes fp32 only (ONNX has no graph for "
                                               "MXNet's int8); pass --format symbol")


def test_load_model_takes_a_precision(run):
    import mxnet as mx

    x = mx.nd.array(np.random.RandomState(1).normal(size=(1, 3, 48, 48)))
    plain = load_model(run / "run")
    fused = load_model(run / "run", precision="fp32")
    assert fused.precision == "fp32"
    np.testing.assert_allclose(fused(x).asnumpy(), plain(x)[0].asnumpy() if isinstance(plain(x), tuple)
                               else plain(x).asnumpy(), rtol=1e-4, atol=1e-4)


def test_threads_that_cannot_take_effect_are_one_usage_line(run, capsys):
    import os

    from deeplab_gluon.cpu_threads import current_choice

    usable = len(os.sched_getaffinity(0))
    other = 1 if current_choice().threads != 1 else 2
    if other > usable:
        pytest.skip("needs two CPUs")
    flags = ["--checkpoint", str(run / "run"), "--progress", "0", "--output", str(run / "unused.json")]
    assert evaluate.main(flags + ["--threads", str(other)]) == 2  # main(argv) from Python cannot restart
    assert capsys.readouterr().err.startswith(f"evaluate: error: --threads {other} cannot take effect in this "
                                              f"process: MXNet was loaded with ")
    assert evaluate.main(flags + ["--threads", str(usable + 1)]) == 2
    assert capsys.readouterr().err == (f"evaluate: error: --threads must be between 1 and the {usable} logical CPUs "
                                       f"this process may use, got {usable + 1}\n")
    assert not (run / "unused.json").exists()


def test_a_command_with_threads_restarts_itself_with_that_count(run, tmp_path):
    env = {key: value for key, value in __import__("os").environ.items()
           if key not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "DEEPLAB_GLUON_THREADS")}
    script = ("import sys, deeplab_gluon.predict as p, deeplab_gluon.cpu_threads as t\n"
              "code = p.main()\nprint('threads', t.current_choice().threads, t.current_choice().source)\n"
              "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", script, "--checkpoint", str(run / "run"), "--input",
                             str(run / "blobs" / "images" / "s01.png"), "--output_dir", str(tmp_path), "--threads",
                             "1", "--progress", "0"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "threads 1 --threads" in result.stdout and (tmp_path / "s01.png").is_file()


def test_predict_and_export_take_bf16_or_say_why_not(run, tmp_path, capsys):
    expected = "bf16" if cpu_has_bf16() else "fp32"
    images = run / "blobs" / "images"
    maps = {}
    for precision in ("fp32", "bf16"):
        assert predict.main(["--checkpoint", str(run / "run"), "--input", str(images), "--output_dir",
                             str(tmp_path / precision), "--precision", precision, "--progress", "0"]) == 0
        maps[precision] = np.stack([read_label(tmp_path / precision / f"s{i:02d}.png") for i in range(20)])
    assert f"precision {expected}" in capsys.readouterr().out
    assert (maps["fp32"] == maps["bf16"]).mean() >= 0.97
    assert export.main(["--checkpoint", str(run / "run"), "--output_dir", str(tmp_path / "export"), "--precision",
                        "bf16", "--input_size", "48", "48"]) == 0
    meta = next((tmp_path / "export").glob("*-meta.json"))
    assert json.loads(meta.read_text())["precision"] == expected and "check symbol" in capsys.readouterr().out
