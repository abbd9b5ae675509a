"""The synthetic toy-shapes dataset: layout, label properties, determinism, reading it back."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deeplab_gluon.data import (DataError, TOY_CLASSES, VOCSegDataset, get_dataset, make_toy_dataset, read_label,
                                render_toy_scene)
from deeplab_gluon.data.toy import CLASS_HUES_DEGREES, HUE_SPREAD_DEGREES

REPO = Path(__file__).resolve().parents[1]


def tree_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_reading_back(tmp_path):
    voc2012 = make_toy_dataset(tmp_path, num_train=6, num_val=3, image_size=(48, 64), seed=1)
    assert voc2012 == tmp_path / "VOC2012"
    lists = voc2012 / "ImageSets" / "Segmentation"
    assert (lists / "train.txt").read_text().split() == [f"train_{i:05d}" for i in range(6)]
    assert (lists / "val.txt").read_text().split() == [f"val_{i:05d}" for i in range(3)]
    assert len((lists / "trainval.txt").read_text().split()) == 9
    dataset = get_dataset("toy", tmp_path, "train")
    assert isinstance(dataset, VOCSegDataset) and len(dataset) == 6
    assert dataset.classes == list(TOY_CLASSES) and dataset.num_classes == 5
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert label.shape == (48, 64) and label.dtype == np.uint8
        values = set(np.unique(label).tolist())
        assert values <= {0, 1, 2, 3, 4, 255} and values & {1, 2, 3, 4} and 255 in values
    assert len(get_dataset("toy", tmp_path, "val")) == 3


def test_same_bytes_for_a_seed_and_prefix_stable(tmp_path):
    first = tree_bytes(make_toy_dataset(tmp_path / "a", num_train=4, num_val=2, image_size=32, seed=5))
    again = tree_bytes(make_toy_dataset(tmp_path / "b", num_train=4, num_val=2, image_size=32, seed=5))
    assert first == again
    other = tree_bytes(make_toy_dataset(tmp_path / "c", num_train=4, num_val=2, image_size=32, seed=6))
    assert other["JPEGImages/train_00000.jpg"] != first["JPEGImages/train_00000.jpg"]
    shorter = tree_bytes(make_toy_dataset(tmp_path / "d", num_train=2, num_val=1, image_size=32, seed=5))
    assert shorter["SegmentationClass/train_00001.png"] == first["SegmentationClass/train_00001.png"]
    assert shorter["JPEGImages/val_00000.jpg"] == first["JPEGImages/val_00000.jpg"]


def test_boundaries_are_void():
    """Like VOC, two different classes never touch: a void band always separates them."""
    for index in range(30):
        _, label = render_toy_scene(np.random.default_rng([0, index]), (64, 64))
        for a, b in ((label[:, 1:], label[:, :-1]), (label[1:], label[:-1])):
            touching = (a != b) & (a != 255) & (b != 255)
            assert not touching.any(), index


def object_colours_by_class(colour_cue: bool, count: int = 600) -> tuple:
    """Mean RGB of every object, per class, over ``count`` small scenes; and the object pixel fraction."""
    colours = {value: [] for value in range(1, 5)}
    covered = []
    for index in range(count):
        image, label = render_toy_scene(np.random.default_rng([1, index]), (32, 32), colour_cue=colour_cue)
        for value in range(1, 5):
            where = label == value
            if where.any():
                colours[value].append(image[where].mean(axis=0))
        covered.append(((label > 0) & (label < 255)).mean())
    return {value: np.array(c) for value, c in colours.items()}, np.mean(covered)


def test_without_the_colour_cue_class_is_told_by_shape_only():
    """Every class draws its colours from one distribution: the average object colour of every class is
    mid-grey (uniform 0-255 colours; standard error about 4 grey levels with these counts)."""
    colours, covered = object_colours_by_class(colour_cue=False)
    means = np.array([colours[value].mean(axis=0) for value in range(1, 5)])
    assert min(len(c) for c in colours.values()) > 200
    assert np.abs(means - 127.5).max() < 16, means
    assert 0.05 < covered < 0.4  # objects are a sizeable part of the image, not all of it


def test_with_the_colour_cue_each_class_keeps_to_its_hue():
    """By default an object's hue lies within 25 degrees of its class's (CLASS_HUES_DEGREES; noise and
    JPEG-free rendering move the mean hue of the object's pixels by a few degrees at most)."""
    colours, covered = object_colours_by_class(colour_cue=True)
    for value in range(1, 5):
        rgb = np.clip(colours[value], 0, 255).astype(np.uint8)[None]  # (1, N, 3)
        hue_degrees = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[0, :, 0] * (360.0 / 256.0)
        offset = (hue_degrees - CLASS_HUES_DEGREES[value - 1] + 180.0) % 360.0 - 180.0
        # Pale objects' hue is noisy; most objects keep near their class hue and none drifts to another's.
        assert np.mean(np.abs(offset) <= HUE_SPREAD_DEGREES + 10) > 0.9, (value, np.percentile(np.abs(offset), 90))
        assert np.mean(np.abs(offset) >= 45) < 0.05, value
    assert 0.05 < covered < 0.4


def test_missing_toy_root_gives_the_command(tmp_path):
    with pytest.raises(DataError, match=r"no toy dataset at .*nothing.*make_toy_data\.py --out"):
        get_dataset("toy", tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        get_dataset("coco", tmp_path, "train")


def test_script(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_toy_data.py"), "--out", str(tmp_path),
                             "--num_train", "3", "--num_val", "2", "--size", "40", "48", "--seed", "2"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 train + 2 val scenes of 40x48" in result.stdout
    image, _ = get_dataset("toy", tmp_path, "val")[1]
    assert image.shape == (40, 48, 3)
    shape_only = tmp_path / "shape_only"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_toy_data.py"), "--out", str(shape_only),
                             "--num_train", "3", "--num_val", "2", "--size", "40", "48", "--seed", "2", "--shape_only"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = render_toy_scene(np.random.default_rng([2, 1, 1]), (40, 48), colour_cue=False)
    assert np.array_equal(read_label(shape_only / "VOC2012" / "SegmentationClass" / "val_00001.png"), expected[1])
    # Same geometry as the default set, other colours.
    assert np.array_equal(get_dataset("toy", tmp_path, "val")[1][1], expected[1])
    assert not np.array_equal(get_dataset("toy", shape_only, "val")[1][0], image)
