"""TrainTransform and EvalTransform: shapes, exact normalisation, padding, alignment, reproducibility."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from deeplab_gluon.data import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize_image

MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def blocks(height=60, width=80):
    """An image whose colour tells its label: four quadrants of classes 1-4 with distinct colours."""
    colours = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 255)}
    label = np.ones((height, width), dtype=np.uint8)
    label[:, width // 2:] = 2
    label[height // 2:, :width // 2] = 3
    label[height // 2:, width // 2:] = 4
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for value, colour in colours.items():
        image[label == value] = colour
    return image, label, colours


def test_normalize_image_values():
    image = np.array([[[255, 0, 128]]], dtype=np.uint8)
    out = normalize_image(image)
    assert out.shape == (3, 1, 1) and out.dtype == np.float32
    expected = ((1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-6)


def test_eval_transform():
    image, label, _ = blocks(33, 47)
    out_image, out_label = EvalTransform()(image, label)
    assert out_image.shape == (3, 33, 47) and out_image.dtype == np.float32
    assert out_label.shape == (33, 47) and out_label.dtype == np.float32
    np.testing.assert_array_equal(out_label, label)
    np.testing.assert_allclose(out_image, ((image / 255.0 - MEAN) / STD).transpose(2, 0, 1), rtol=1e-5, atol=1e-6)


def test_identity_settings_only_normalise():
    image, label, _ = blocks()
    transform = TrainTransform(crop_size=(60, 80), scale_range=(1, 1), flip=False)
    out_image, out_label = transform(image, label, rng=np.random.default_rng(0))
    assert out_image.shape == (3, 60, 80) and out_label.shape == (60, 80)
    assert out_image.dtype == np.float32 and out_label.dtype == np.float32
    np.testing.assert_array_equal(out_label, label)
    np.testing.assert_allclose(out_image, ((image / 255.0 - MEAN) / STD).transpose(2, 0, 1), rtol=1e-5, atol=1e-6)


def test_flip_mirrors_image_and_label_together():
    image, label, _ = blocks()
    transform = TrainTransform(crop_size=(60, 80), scale_range=(1, 1), flip=True)
    flips = set()
    for seed in range(20):
        out_image, out_label = transform(image, label, rng=np.random.default_rng(seed))
        flipped = bool(np.array_equal(out_label, label[:, ::-1]))
        assert flipped or np.array_equal(out_label, label)
        source = image[:, ::-1] if flipped else image
        np.testing.assert_allclose(out_image, normalize_image(source), atol=1e-5)
        flips.add(flipped)
    assert flips == {True, False}


def test_padding_is_mean_colour_and_ignore():
    image, label, _ = blocks(30, 40)
    transform = TrainTransform(crop_size=64, scale_range=(1, 1))
    out_image, out_label = transform(image, label, rng=np.random.default_rng(3))
    assert out_image.shape == (3, 64, 64) and out_label.shape == (64, 64)
    padding = out_label == 255
    assert (~padding).sum() == 30 * 40  # the whole image is inside the crop, nothing else
    np.testing.assert_allclose(out_image[:, padding], 0.0, atol=1e-6)  # mean colour normalises to 0
    rows, cols = np.nonzero(~padding)
    placed = out_label[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert np.array_equal(placed, label) or np.array_equal(placed, label[:, ::-1])
    # the image is placed at random, not always in the top-left corner
    corners = {tuple(np.argwhere(transform(image, label, rng=np.random.default_rng(s))[1] != 255).min(axis=0))
               for s in range(10)}
    assert len(corners) > 1


def test_scale_range_is_respected():
    image = np.full((100, 100, 3), 90, dtype=np.uint8)
    label = np.zeros((100, 100), dtype=np.uint8)
    transform = TrainTransform(crop_size=256, scale_range=(0.5, 2.0), flip=False)
    sides = [np.sqrt((transform(image, label, rng=np.random.default_rng(s))[1] != 255).sum()) for s in range(40)]
    assert min(sides) >= 50 and max(sides) <= 200
    assert min(sides) < 80 and max(sides) > 170  # the whole range is used


def test_image_and_label_stay_aligned():
    image, label, colours = blocks()
    transform = TrainTransform(crop_size=(48, 56), scale_range=(0.5, 2.0), blur=False, color_jitter=False)
    kernel = np.ones((3, 3), np.uint8)
    for seed in range(15):
        out_image, out_label = transform(image, label, rng=np.random.default_rng(seed))
        rgb = out_image.transpose(1, 2, 0) * STD + MEAN  # back to 0-1 RGB
        as_uint8 = out_label.astype(np.uint8)
        seams = cv2.dilate(as_uint8, kernel) != cv2.erode(as_uint8, kernel)  # bilinear mixes colours there
        for value, colour in colours.items():
            where = (out_label == value) & ~seams
            np.testing.assert_allclose(rgb[where], np.broadcast_to(np.array(colour) / 255.0, rgb[where].shape),
                                       atol=0.02, err_msg=f"seed {seed}, class {value}")


def test_reproducible_from_rng_only():
    image, label, _ = blocks()
    transform = TrainTransform(crop_size=40, blur=True, color_jitter=True)
    first = transform(image, label, rng=np.random.default_rng(7))
    again = transform(image, label, rng=np.random.default_rng(7))
    other = transform(image, label, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert transform(image, label)[0].shape == (3, 40, 40)  # a fresh generator when none is given


def test_blur_and_jitter_leave_padding_and_labels_alone():
    image, label, _ = blocks(20, 20)
    transform = TrainTransform(crop_size=50, scale_range=(1, 1), blur=True, color_jitter=True)
    changed = 0
    for seed in range(6):
        out_image, out_label = transform(image, label, rng=np.random.default_rng(seed))
        padding = out_label == 255
        np.testing.assert_allclose(out_image[:, padding], 0.0, atol=1e-6)
        assert set(np.unique(out_label)) == {1, 2, 3, 4, 255}
        plain = TrainTransform(crop_size=50, scale_range=(1, 1))(image, label, rng=np.random.default_rng(seed))
        changed += not np.allclose(out_image[:, ~padding].mean(), plain[0][:, plain[1] != 255].mean(), atol=1e-3)
    assert changed  # colours do change


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), height=st.integers(5, 70), width=st.integers(5, 70),
       crop=st.integers(8, 64), values=st.lists(st.integers(0, 20), min_size=1, max_size=5))
def test_labels_keep_their_values(seed, height, width, crop, values):
    rng = np.random.default_rng(seed)
    label = rng.choice(np.array(values + [255], dtype=np.uint8), size=(height, width))
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    transform = TrainTransform(crop_size=crop, blur=True, color_jitter=True)
    out_image, out_label = transform(image, label, rng=rng)
    assert out_image.shape == (3, crop, crop) and out_label.shape == (crop, crop)
    assert set(np.unique(out_label).astype(int)) <= set(values) | {255}
    assert np.isfinite(out_image).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        TrainTransform(crop_size=0)
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match="mean needs 3 values"):
        EvalTransform(mean=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"image \(H, W, 3\) and label \(H, W\)"):
        TrainTransform()(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))
