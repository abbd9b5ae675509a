"""VOC colour map, colourising, and label PNGs read back as class indices."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deeplab_gluon.data import DataError, VOC_CLASSES, colorize, read_label, save_index_png, voc_palette

VOC_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "voc_sample"


def test_voc_classes():
    assert len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor"


def test_palette_known_entries():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # Values from the VOC devkit's labelcolormap.
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}
    for index, colour in expected.items():
        assert tuple(palette[index]) == colour, index
    assert len({tuple(c) for c in palette}) == 256  # distinct colours, so RGB -> index is well defined


def test_palette_matches_real_voc_files():
    files = sorted((VOC_SAMPLE / "VOC2012" / "SegmentationClass").glob("*.png"))
    if not files:
        pytest.skip(f"VOC sample not found at {VOC_SAMPLE}")
    with Image.open(files[0]) as image:
        assert image.mode == "P"
        stored = np.array(image.getpalette()[:768], dtype=np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(stored, voc_palette())


def test_colorize():
    mask = np.array([[0, 1], [15, 255]], dtype=np.uint8)
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb.reshape(4, 3), [[0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192]])
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[256]]))


def test_index_png_round_trip(tmp_path):
    mask = np.random.default_rng(0).integers(0, 21, size=(37, 53)).astype(np.uint8)
    mask[:3] = 255
    path = tmp_path / "mask.png"
    save_index_png(path, mask)
    with Image.open(path) as image:  # any reader sees the indices themselves, with the VOC palette
        assert image.mode == "P"
        np.testing.assert_array_equal(np.array(image), mask)
        assert image.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(read_label(path), mask)


def test_grey_and_rgb_labels(tmp_path):
    mask = np.array([[0, 1, 2], [20, 255, 7]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), mask)
    np.testing.assert_array_equal(read_label(tmp_path / "grey.png"), mask)
    # VOC-coloured RGB ground truth from another tool maps back to indices.
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(colorize(mask), cv2.COLOR_RGB2BGR))
    labels = read_label(tmp_path / "rgb.png")
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, mask)


def test_rgb_label_outside_palette_names_file(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), rgb)
    with pytest.raises(DataError, match="photo.png.*outside the VOC palette"):
        read_label(path)


def test_missing_and_broken_label_files(tmp_path):
    with pytest.raises(DataError, match="label file not found: .*nothing.png"):
        read_label(tmp_path / "nothing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_label(tmp_path / "broken.png")
