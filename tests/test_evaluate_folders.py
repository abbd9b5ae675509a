"""Folder-vs-folder scoring: score_folders and the `python -m deeplab_gluon.evaluate` command."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deeplab_gluon.data import DataError, VOCSegDataset, colorize, save_index_png
from deeplab_gluon.evaluate import main, score_folders

REPO = Path(__file__).resolve().parents[1]
VOC_SAMPLE = REPO.parent / "shared" / "voc_sample"

# The hand-computed case of test_metrics, split over two images.
GT = {"img1": np.array([[0, 0, 1, 1]]), "img2": np.array([[2, 2, 255, 0]])}
PRED = {"img1": np.array([[0, 1, 1, 1]]), "img2": np.array([[2, 0, 2, 0]])}
MATRIX = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 1]])


def table_values(text):
    """``{name: value}`` from the two-column lines of a printed IoU table."""
    return dict(line.split() for line in text.splitlines() if len(line.split()) == 2)


@pytest.fixture()
def folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for stem in GT:
        save_index_png(gt_dir / f"{stem}.png", GT[stem].astype(np.uint8))  # VOC-style palette PNG
    cv2.imwrite(str(pred_dir / "img1.png"), PRED["img1"].astype(np.uint8))  # grey PNG of indices
    rgb = colorize(PRED["img2"].astype(np.uint8))  # VOC-coloured RGB
    cv2.imwrite(str(pred_dir / "img2.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(pred_dir / "extra.png"), np.zeros((1, 4), np.uint8))  # no ground truth: not scored
    return pred_dir, gt_dir


def test_score_folders_hand_computed(folders):
    pred_dir, gt_dir = folders
    metric = score_folders(pred_dir, gt_dir, num_classes=3, progress=False)
    np.testing.assert_array_equal(metric.matrix, MATRIX)
    only_first = score_folders(pred_dir, gt_dir, num_classes=3, ids=["img1"], progress=False)
    np.testing.assert_array_equal(only_first.matrix, [[1, 1, 0], [0, 2, 0], [0, 0, 0]])


def test_main_prints_table_and_json(folders, tmp_path, capsys):
    pred_dir, gt_dir = folders
    names = tmp_path / "names.txt"
    names.write_text("sky 70 130 180\nroad 128 64 128\ncar\n")  # a classes.txt: colours are not part of the name
    out_json = tmp_path / "scores.json"
    code = main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--classes", str(names),
                 "--out_json", str(out_json)])
    assert code == 0
    table = table_values(capsys.readouterr().out)
    assert table["sky"] == "50.00" and table["road"] == "66.67" and table["car"] == "50.00"
    assert table["pixAcc"] == "71.43" and table["mIoU"] == "55.56"
    scores = json.loads(out_json.read_text())
    assert scores["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3) and set(scores["IoU"]) == {"sky", "road", "car"}


def test_missing_prediction_is_one_line_error(folders, capsys):
    pred_dir, gt_dir = folders
    (pred_dir / "img2.png").unlink()
    with pytest.raises(DataError, match=r"prediction not found: .*pred/img2\.png \(for ground truth .*gt/img2\.png\)"):
        score_folders(pred_dir, gt_dir, num_classes=3, progress=False)
    assert main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--num_classes", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evaluate: error: prediction not found:") and "\n" not in err


def test_bad_inputs(folders, tmp_path, capsys):
    pred_dir, gt_dir = folders
    # ground-truth class 2 does not exist with 2 classes: the message names the files and the value;
    # met while scoring, so a failure of the work (exit 1), not a refusal before it
    assert main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--num_classes", "2"]) == 1
    assert "gt/img2.png: ground-truth label values [2]" in capsys.readouterr().err
    assert main(["--pred_dir", str(pred_dir), "--gt_dir", str(tmp_path / "none"), "--num_classes", "3"]) == 2
    assert "ground-truth folder not found:" in capsys.readouterr().err
    assert main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--classes", "toy", "--num_classes", "3"]) == 2
    assert "--num_classes 3 but --classes toy has 5 names" in capsys.readouterr().err
    cv2.imwrite(str(pred_dir / "img1.png"), np.zeros((2, 4), np.uint8))
    with pytest.raises(DataError, match=r"pred/img1\.png is 4x2 but ground truth .*img1\.png is 4x1"):
        score_folders(pred_dir, gt_dir, num_classes=3, progress=False)


def test_voc_sample_scores(tmp_path):
    if not (VOC_SAMPLE / "VOC2012").is_dir():
        pytest.skip(f"VOC sample not found at {VOC_SAMPLE}")
    dataset = VOCSegDataset(VOC_SAMPLE, "val")
    gt_dir = VOC_SAMPLE / "VOC2012" / "SegmentationClass"
    perfect, background = tmp_path / "perfect", tmp_path / "background"
    perfect.mkdir()
    background.mkdir()
    counts = np.zeros(256, dtype=np.int64)
    for index, sample_id in enumerate(dataset.ids):
        label = dataset[index][1]
        counts += np.bincount(label.ravel(), minlength=256)
        save_index_png(perfect / f"{sample_id}.png", label)
        save_index_png(background / f"{sample_id}.png", np.zeros_like(label))
    ids_file = VOC_SAMPLE / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    ids = ids_file.read_text().split()
    metric = score_folders(perfect, gt_dir, 21, ids=ids, progress=False)
    assert metric.pixel_accuracy() == 1.0 and metric.miou() == 1.0
    assert metric.total == counts[:21].sum()
    # Predicting background everywhere: pixAcc = background share; IoU(background) = the same share,
    # IoU = 0 for the classes present, NaN for the absent ones.
    metric = score_folders(background, gt_dir, 21, ids=ids, progress=False)
    share = counts[0] / counts[:21].sum()
    assert metric.pixel_accuracy() == pytest.approx(share)
    iou = metric.iou()
    assert iou[0] == pytest.approx(share)
    present = counts[1:21] > 0
    assert (iou[1:][present] == 0).all() and np.isnan(iou[1:][~present]).all()
    assert metric.miou() == pytest.approx(share / (1 + present.sum()))


def test_command_line(folders):
    pred_dir, gt_dir = folders
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "deeplab_gluon.evaluate", "--pred_dir", str(pred_dir),
                             "--gt_dir", str(gt_dir), "--num_classes", "3"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert table_values(result.stdout)["mIoU"] == "55.56"
    (pred_dir / "img1.png").unlink()
    result = subprocess.run([sys.executable, "-m", "deeplab_gluon.evaluate", "--pred_dir", str(pred_dir),
                             "--gt_dir", str(gt_dir), "--num_classes", "3"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("evaluate: error: prediction not found:")
