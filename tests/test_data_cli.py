"""The data layouts end to end: train.py for a step or two and evaluate/predict on tiny fakes, run from a
temporary working directory with relative paths, as the README's commands are typed (issues 16 and 19)."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import fake_scenes
import fake_voc
from deeplab_gluon.data import CITYSCAPES_COLOURS, write_image
from deeplab_gluon.predict import main as predict_main
from tiny_model import save_tiny_checkpoint, tiny_net

REPO = Path(__file__).resolve().parents[1]
TINY = ["--base_architecture", "resnet_v2_18", "--gpus", "-1", "--crop_size", "32", "--batch_size", "2",
        "--max_iter", "2", "--num_workers", "0", "--val_every", "0", "--progress", "0"]
CLASSES_TXT = "sky 70 130 180\nroad 128 64 128\ncar\n"


def run(cwd, *args, module=None):
    """Run train.py (or ``python -m deeplab_gluon.<module>``) in ``cwd``; the CompletedProcess."""
    command = [sys.executable] + (["-m", f"deeplab_gluon.{module}"] if module else [str(REPO / "train.py")])
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(command + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def checkpoint_meta(run_dir: Path) -> dict:
    checkpoint = sorted((run_dir / "checkpoints").glob("*.ckpt"))[-1]
    with zipfile.ZipFile(checkpoint) as archive:
        return json.loads(archive.read("meta.json"))


def write_folder_dataset(root: Path, classes_txt: str = CLASSES_TXT) -> None:
    """``root/images/*.jpg``, ``root/labels/*.png`` (classes 0-2, 255 void), train/val lists, classes.txt."""
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for number in range(6):
        write_image(root / "images" / f"{number:04d}.jpg", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        label = np.full((24, 32), number % 3, np.uint8)
        label[0] = 255
        cv2.imwrite(str(root / "labels" / f"{number:04d}.png"), label)
    (root / "train.txt").write_text("0000\n0001\n0002\n0003\n")
    (root / "val.txt").write_text("0004\n0005\n")
    if classes_txt:
        (root / "classes.txt").write_text(classes_txt)


def test_folder_readme_commands_with_a_relative_data_dir(tmp_path):
    """Issue 19.1/19.2 and 18.4: relative --data_dir with split lists, then 'all' / 'none', num_classes from
    classes.txt, and evaluate scoring the run with the class names."""
    write_folder_dataset(tmp_path / "mydata")
    result = run(tmp_path, "--dataset", "folder", "--data_dir", "mydata", "--train_split", "train",
                 "--val_split", "val", "--output_dir", "runs/lists", *TINY)
    assert result.returncode == 0, result.stderr
    meta = checkpoint_meta(tmp_path / "runs" / "lists")
    assert meta["classes"] == ["sky", "road", "car"] and meta["model"]["num_classes"] == 3
    assert meta["palette"] == [[70, 130, 180], [128, 64, 128], [0, 128, 0]]  # car: VOC's colour of 2
    scored = run(tmp_path, "--checkpoint", "runs/lists", "--split", "val", "--output", "scores.json", "--progress", "0",
                 module="evaluate")
    assert scored.returncode == 0, scored.stderr
    assert set(json.loads((tmp_path / "scores.json").read_text())["summary"]["IoU"]) == {"sky", "road", "car"}

    result = run(tmp_path, "--dataset", "folder", "--data_dir", "./mydata", "--train_split", "all",
                 "--val_split", "none", "--output_dir", "runs/all", *TINY)
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in (tmp_path / "runs" / "all" / "log.jsonl").read_text().splitlines()]
    assert not [entry for entry in log if entry["type"] == "val"]  # no validation split, no validation


def test_folder_without_class_count_is_one_line(tmp_path):
    write_folder_dataset(tmp_path / "mydata", classes_txt="")
    result = run(tmp_path, "--dataset", "folder", "--data_dir", "mydata", "--train_split", "all",
                 "--val_split", "none", "--output_dir", "run", *TINY)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--dataset folder needs --num_classes N or a class list" in lines[0]
    assert result.returncode == 2 and "classes.txt" in lines[0]


def test_cityscapes_trains_evaluates_and_predicts_in_its_colours(tmp_path):
    fake_scenes.write_cityscapes(tmp_path / "cityscapes")
    result = run(tmp_path, "--dataset", "cityscapes", "--data_dir", "cityscapes", "--train_split", "train",
                 "--val_split", "val", "--output_dir", "run", *TINY)
    assert result.returncode == 0, result.stderr
    meta = checkpoint_meta(tmp_path / "run")
    assert meta["classes"][0] == "road" and meta["palette"] == [list(c) for c in CITYSCAPES_COLOURS]
    scored = run(tmp_path, "--checkpoint", "run", "--output", "scores.json", "--progress", "0", module="evaluate")
    assert scored.returncode == 0, scored.stderr
    assert len(json.loads((tmp_path / "scores.json").read_text())["summary"]["IoU"]) == 19
    image = tmp_path / "cityscapes" / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png"
    predicted = run(tmp_path, "--checkpoint", "run", "--input", image, "--output_dir", "pred", "--progress", "0",
                    module="predict")
    assert predicted.returncode == 0, predicted.stderr
    with Image.open(tmp_path / "pred" / f"{image.stem}.png") as png:
        assert png.getpalette()[:3 * 19] == [v for colour in CITYSCAPES_COLOURS for v in colour]


def test_ade20k_trains(tmp_path):
    fake_scenes.write_ade20k(tmp_path / "data")
    result = run(tmp_path, "--dataset", "ade20k", "--data_dir", "data", "--train_split", "train",
                 "--val_split", "val", "--output_dir", "run", *TINY)
    assert result.returncode == 0, result.stderr
    meta = checkpoint_meta(tmp_path / "run")
    assert meta["model"]["num_classes"] == 150 and meta["palette"][0] == [120, 120, 120]


@pytest.mark.parametrize("layout", ["VOCaug", "drsleep"])
def test_voc_layouts_train(voc_sample_root, tmp_path, layout):
    """gluoncv's VOCdevkit_aug (VOC2012 + VOCaug/dataset) with --train_split train_aug, and a DrSleep list."""
    devkit = tmp_path / "VOCdevkit_aug"
    splits = fake_voc.build_devkit_from_sample(voc_sample_root, devkit, aug_labels=layout == "drsleep",
                                               sbd_layout="VOCaug" if layout == "VOCaug" else "")
    split = "train_aug"
    if layout == "drsleep":
        ids = fake_voc.sample_train_aug(splits)[:4]
        (devkit / "train.txt").write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
        split = "train.txt"
    result = run(tmp_path, "--dataset", "voc", "--data_dir", "VOCdevkit_aug", "--train_split", split,
                 "--val_split", "none", "--output_dir", "run", *TINY)
    assert result.returncode == 0, result.stderr


def test_predict_draws_an_older_checkpoint_in_its_dataset_colours(tmp_path, capsys):
    """A checkpoint without a stored palette: predict takes the colours of the dataset it names."""
    checkpoint = save_tiny_checkpoint(tmp_path / "run", tiny_net(num_classes=19), [f"c{i}" for i in range(19)],
                                      dataset="cityscapes")
    write_image(tmp_path / "image.png", np.zeros((20, 24, 3), np.uint8))
    code = predict_main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "image.png"), "--output_dir",
                         str(tmp_path / "out"), "--progress", "0"])
    assert code == 0, capsys.readouterr().err
    with Image.open(tmp_path / "out" / "image.png") as png:
        assert png.getpalette()[:6] == [128, 64, 128, 244, 35, 232]
