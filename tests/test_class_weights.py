"""Class pixel counts (cached next to the data), ENet weights and weight files, against hand-computed values."""
import json

import cv2
import numpy as np
import pytest

from deeplab_gluon.data import DataError, SegFolderDataset, write_image
from deeplab_gluon.data import class_weights as cw


@pytest.fixture()
def folder(tmp_path):
    """Three 4x5 labels: a = 12 px class 1 + 8 px void, b = 15 px class 1 + 5 px class 3, c = 20 px class 0."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    a = np.full((4, 5), 1, np.uint8)
    a[:2, :4] = 255
    b = np.full((4, 5), 1, np.uint8)
    b[3] = 3
    c = np.zeros((4, 5), np.uint8)
    for stem, label in (("a", a), ("b", b), ("c", c)):
        write_image(tmp_path / "images" / f"{stem}.png", np.zeros((4, 5, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "labels" / f"{stem}.png"), label)
    return tmp_path


def test_counts_by_hand(folder):
    dataset = SegFolderDataset(folder, num_classes=4)
    counts = cw.count_class_pixels(dataset)
    assert counts.dtype == np.int64 and counts.tolist() == [20, 12 + 15, 0, 5]


def test_enet_weights_by_hand():
    # p = 0.6, 0.2, 0, 0.2 -> 1 / ln(1.62), 1 / ln(1.22), 1 / ln(1.02), 1 / ln(1.22)
    weights = cw.enet_weights([6, 2, 0, 2])
    np.testing.assert_allclose(weights, [2.0728561284799185, 5.02889455097369, 50.4983497918439, 5.02889455097369],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="positive sum"):
        cw.enet_weights([0, 0])


def test_counts_are_cached_per_split_and_file_list(folder, monkeypatch):
    (folder / "train.txt").write_text("a\nb\n")
    train = SegFolderDataset(folder, "train", num_classes=4)
    assert cw.cached_class_pixel_counts(train).tolist() == [0, 27, 0, 5]
    cache = json.loads((folder / cw.CACHE_NAME).read_text())
    assert cache["train"]["counts"] == [0, 27, 0, 5] and cache["train"]["images"] == 2
    assert cache["train"]["fingerprint"] == cw.label_list_fingerprint(train)

    calls = []
    real_count = cw.count_class_pixels
    monkeypatch.setattr(cw, "count_class_pixels", lambda *a, **k: calls.append(1) or real_count(*a, **k))
    assert cw.cached_class_pixel_counts(train).tolist() == [0, 27, 0, 5] and not calls  # from the cache
    everything = SegFolderDataset(folder, "all", num_classes=4)
    assert cw.cached_class_pixel_counts(everything).tolist() == [20, 27, 0, 5] and len(calls) == 1
    (folder / "train.txt").write_text("a\nc\n")  # the split changed: recounted, the entry replaced
    train = SegFolderDataset(folder, "train", num_classes=4)
    assert cw.cached_class_pixel_counts(train).tolist() == [20, 12, 0, 0] and len(calls) == 2
    assert set(json.loads((folder / cw.CACHE_NAME).read_text())) == {"train", "all"}
    expected = 1 / np.log(1.02 + np.array([20, 12, 0, 0]) / 32)
    np.testing.assert_allclose(cw.resolve_class_weights("auto", train), expected)


def test_unwritable_cache_is_not_an_error(folder, tmp_path_factory):
    blocked = tmp_path_factory.mktemp("blocked") / "file"
    blocked.write_text("")
    dataset = SegFolderDataset(folder, num_classes=4)
    counts = cw.cached_class_pixel_counts(dataset, cache_path=blocked / "counts.json")  # parent is a file
    assert counts.tolist() == [20, 27, 0, 5]


def test_bad_label_value_names_the_file(folder):
    with pytest.raises(DataError, match=r"labels/b\.png: label values \[3\] are neither classes 0..2"):
        cw.count_class_pixels(SegFolderDataset(folder, num_classes=3))


def test_weights_file(folder, tmp_path):
    dataset = SegFolderDataset(folder, num_classes=4)
    path = tmp_path / "weights.txt"
    path.write_text("# background, then the rest\n0.5, 1\n2 4\n")
    np.testing.assert_array_equal(cw.resolve_class_weights(str(path), dataset), [0.5, 1, 2, 4])
    path.write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"weights\.txt holds 3 numbers for 4 classes"):
        cw.read_class_weights(path, 4)
    path.write_text("1 2 -3 nan\n")
    with pytest.raises(DataError, match=r"must be finite, non-negative"):
        cw.read_class_weights(path, 4)
    with pytest.raises(DataError, match=r"cannot read class weights .*missing"):
        cw.read_class_weights(tmp_path / "missing", 4)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_cache_is_written_with_the_umasks_permissions(folder, umask):
    """Issue 28 item 6: others sharing the dataset folder can read the cache (not mkstemp's 0600)."""
    import os

    previous = os.umask(umask)
    try:
        cw.cached_class_pixel_counts(SegFolderDataset(folder, num_classes=4))
    finally:
        os.umask(previous)
    assert (folder / cw.CACHE_NAME).stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary left
