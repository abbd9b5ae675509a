"""``python -m deeplab_gluon.evaluate --checkpoint``: scores, JSON report, devices, and one-line errors."""
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deeplab_gluon.data import TOY_CLASSES, VOC_CLASSES, VOCSegDataset, make_toy_dataset, read_label
from deeplab_gluon.evaluate import default_output_path, main
from deeplab_gluon.inference import image_to_batch
from deeplab_gluon.metrics import ConfusionMatrix
from tiny_model import save_tiny_checkpoint, tiny_net

REPO = Path(__file__).resolve().parents[1]
NUM_VAL = 5


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A toy dataset (5 val scenes of 40x56) and a run folder holding a soft random-weight checkpoint."""
    root = tmp_path_factory.mktemp("eval")
    data_dir = root / "toy"
    make_toy_dataset(data_dir, num_train=1, num_val=NUM_VAL, image_size=(40, 56), seed=3)
    net = tiny_net(num_classes=len(TOY_CLASSES), seed=1)
    latest = save_tiny_checkpoint(root / "run", net, TOY_CLASSES, dataset="toy", data_dir=data_dir, iteration=9)
    with zipfile.ZipFile(latest.with_name("iter-0000003.ckpt"), "w") as older:  # complete but never loaded
        older.writestr("meta.json", json.dumps({"iteration": 3}))
        older.writestr("net.params", b"")
    return {"run": root / "run", "checkpoint": latest, "data_dir": data_dir, "net": net}


def hand_confusion(net, data_dir, split="val"):
    """The confusion matrix of arg-max(logits) over a toy split, image by image, without the evaluator."""
    dataset = VOCSegDataset(data_dir, split, classes=TOY_CLASSES)
    matrix = ConfusionMatrix(len(TOY_CLASSES))
    for index in range(len(dataset)):
        image, label = dataset[index]
        logits = net(image_to_batch(image)).asnumpy()[0]
        matrix.update(logits.argmax(axis=0), label)
    return matrix.matrix


def run(args, capsys):
    code = main([str(a) for a in args] + ["--progress", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_scales_one_is_single_scale_and_matches_a_hand_count(toy_run, tmp_path, capsys):
    outputs = {}
    for name, extra in (("default", []), ("scales_1", ["--scales", "1.0"]), ("twice", ["--scales", "1.0,1.0"])):
        outputs[name] = tmp_path / f"{name}.json"
        code, out, err = run(["--checkpoint", toy_run["run"], "--output", outputs[name]] + extra, capsys)
        assert code == 0, err
    reports = {name: json.loads(path.read_text()) for name, path in outputs.items()}
    expected = hand_confusion(toy_run["net"], toy_run["data_dir"])
    assert len(np.unique(np.nonzero(expected)[1])) > 1  # the net predicts several classes: a real check
    for report in reports.values():
        np.testing.assert_array_equal(report["confusion_matrix"], expected)  # exact, not approximately
    report = reports["default"]
    assert report["checkpoint"] == str(toy_run["checkpoint"]) and report["iteration"] == 9  # the run's latest
    assert report["dataset"] == "toy" and report["split"] == "val" and report["num_images"] == NUM_VAL
    assert report["settings"]["scales"] == [1.0] and report["settings"]["flip"] is False
    assert report["settings"]["output_stride"] == 16 and report["settings"]["devices"] == ["cpu(0)"]
    matrix = np.array(expected)
    assert report["summary"]["pixAcc"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert report["summary"]["num_pixels"] == matrix.sum()
    assert set(report["summary"]["IoU"]) == set(TOY_CLASSES) and report["classes"] == list(TOY_CLASSES)


def test_two_cpu_contexts_give_the_same_confusion_matrix(toy_run, tmp_path, capsys):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    for path, gpus in ((one, "-1"), (two, "cpu:2")):
        code, _, err = run(["--checkpoint", toy_run["checkpoint"], "--gpus", gpus, "--scales", "0.75,1",
                            "--output", path], capsys)
        assert code == 0, err
    one, two = json.loads(one.read_text()), json.loads(two.read_text())
    assert two["settings"]["devices"] == ["cpu(0)", "cpu(1)"]
    assert one["confusion_matrix"] == two["confusion_matrix"]
    assert np.sum(one["confusion_matrix"]) > 0


def test_default_output_name_table_and_os8(toy_run, capsys):
    code, out, err = run(["--checkpoint", toy_run["checkpoint"], "--output_stride", "8", "--flip",
                          "--scales", "0.75,1.0", "--limit", "2"], capsys)
    assert code == 0, err
    path = toy_run["checkpoint"].with_name("iter-0000009.ckpt.eval-val-ms-flip-os8-limit2.json")
    assert f"wrote {path}" in out
    report = json.loads(path.read_text())
    assert report["num_images"] == 2 and report["settings"]["output_stride"] == 8
    assert report["settings"]["trained_output_stride"] == 16 and report["settings"]["flip"] is True
    labels = [read_label(toy_run["data_dir"] / "VOC2012" / "SegmentationClass" / f"val_0000{i}.png") for i in (0, 1)]
    assert report["summary"]["num_pixels"] == sum(int((label != 255).sum()) for label in labels)
    rows = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    for name in TOY_CLASSES:
        assert name in rows
    assert float(rows["mIoU"]) == pytest.approx(100 * report["summary"]["mIoU"], abs=0.006)


def test_default_output_path_names_the_settings():
    ckpt = Path("runs/x/checkpoints/iter-0000150.ckpt")
    assert default_output_path(ckpt, "val", (1.0,), False, None, 16, None).name == "iter-0000150.ckpt.eval-val.json"
    assert default_output_path(ckpt, "val", (1.0,), False, 8, 8, None).name == "iter-0000150.ckpt.eval-val.json"
    assert default_output_path(ckpt, "train", (0.5, 1.0), True, 8, 16, 4).name == \
        "iter-0000150.ckpt.eval-train-ms-flip-os8-limit4.json"


def test_voc_sample_end_to_end(voc_sample_root, tmp_path, capsys):
    net = tiny_net(num_classes=21, seed=2, output_stride=32)  # OS32 and scale 0.5: fast on 500x375 images
    checkpoint = save_tiny_checkpoint(tmp_path / "voc_run", net, VOC_CLASSES, iteration=11, output_stride=32)
    output = tmp_path / "voc.json"
    code, out, err = run(["--checkpoint", checkpoint, "--dataset", "voc", "--data_dir", voc_sample_root,
                          "--scales", "0.5", "--output", output], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "precision fp32"  # what runs, first (fused on the CPU)
    table_names = [line.split()[0] for line in lines[3:24]]
    assert table_names == list(VOC_CLASSES)
    assert any(line.startswith("mIoU") for line in lines)
    report = json.loads(output.read_text())
    dataset = VOCSegDataset(voc_sample_root, "val")
    valid = sum(int((read_label(dataset.label_path(i)) != 255).sum()) for i in range(len(dataset)))
    assert report["num_images"] == len(dataset) == 13 and report["iteration"] == 11
    assert report["summary"]["num_pixels"] == valid  # scored at full resolution, whatever the scale
    assert np.array(report["confusion_matrix"]).shape == (21, 21)
    assert list(report["summary"]["IoU"]) == list(VOC_CLASSES)


def test_a_bad_sample_stops_the_evaluation_with_its_name(toy_run, tmp_path, capsys):
    data_dir = tmp_path / "toy"
    make_toy_dataset(data_dir, num_train=1, num_val=3, image_size=(40, 56), seed=3)
    broken = data_dir / "VOC2012" / "JPEGImages" / "val_00001.jpg"
    broken.write_bytes(b"not a jpeg")
    code, out, err = run(["--checkpoint", toy_run["checkpoint"], "--data_dir", data_dir,
                          "--output", tmp_path / "x.json"], capsys)
    assert code == 1  # met during the work, as in train.py and predict
    assert err.strip() == f"evaluate: error: cannot decode image {broken}"
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "{tmp}/none.ckpt"], "--checkpoint: no checkpoint at {tmp}/none.ckpt"),
    (["--checkpoint", "{tmp}"], "--checkpoint: {tmp} holds no complete checkpoint"),
    (["--checkpoint", "{ckpt}", "--scales", "1,x"], "argument --scales: must be comma-separated numbers"),
    (["--checkpoint", "{ckpt}", "--data_dir", "{tmp}/missing"], "--data_dir {tmp}/missing does not exist"),
    (["--checkpoint", "{ckpt}", "--gpus", "7"], "--gpus 7: GPU 7 does not exist"),
    (["--checkpoint", "{ckpt}", "--split", "nope"], "split list not found:"),
    (["--checkpoint", "{ckpt}", "--dataset", "voc"], "predicts 5 classes but voc dataset"),
    (["--checkpoint", "{ckpt}", "--dataset", "voc", "--data_dir", "{tmp}"], "no VOC2012 dataset at {tmp}"),
    (["--checkpoint", "{ckpt}", "--classes", "voc"], "--classes belongs to folder mode"),
    (["--pred_dir", "{tmp}", "--gt_dir", "{tmp}", "--flip"], "--flip needs --checkpoint"),
    # issue 28 item 2: checkpoint-mode flags with a non-None default were silently ignored in folder mode
    (["--pred_dir", "{tmp}", "--gt_dir", "{tmp}", "--split", "test"], "--split needs --checkpoint"),
    (["--pred_dir", "{tmp}", "--gt_dir", "{tmp}", "--gpus", "0"], "--gpus needs --checkpoint"),
    (["--pred_dir", "{tmp}", "--gt_dir", "{tmp}", "--num_workers", "4"], "--num_workers needs --checkpoint"),
    (["--pred_dir", "{tmp}", "--gt_dir", "{tmp}", "--calib_images", "8"], "--calib_images needs --checkpoint"),
    (["--split", "val"], "give --checkpoint (score a model) or both --pred_dir and --gt_dir"),
    (["--checkpoint", "{ckpt}", "--output", "{tmp}/file/x.json"], "--output {tmp}/file/x.json: {tmp}/file is a file"),
    (["--checkpoint", "{ckpt}", "--ignore_label", "0"], "--ignore_label 0: the toy dataset marks void pixels 255"),
])
def test_user_mistakes_are_one_line_errors(toy_run, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("")
    args = [a.format(tmp=tmp_path, ckpt=toy_run["checkpoint"]) for a in args]
    code, out, err = run(args, capsys)
    assert code == 2
    assert err.startswith("evaluate: error: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err


def test_eval_sh_passes_every_argument_to_the_module(tmp_path):
    # The module itself runs as a subprocess in test_evaluate_folders.test_command_line; here a stand-in
    # interpreter shows what the wrapper runs, argument by argument (spaces included).
    stand_in = tmp_path / "python"
    stand_in.write_text('#!/bin/sh\nfor arg in "$@"; do echo "[$arg]"; done\nexit 3\n')
    stand_in.chmod(0o755)
    env = dict(os.environ, PYTHON=str(stand_in))
    result = subprocess.run(["bash", str(REPO / "scripts" / "eval.sh"), "--checkpoint", "runs/a b", "--flip"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3  # its exit status comes back
    assert result.stdout.split("\n")[:-1] == ["[-m]", "[deeplab_gluon.evaluate]", "[--checkpoint]", "[runs/a b]",
                                               "[--flip]"]
