"""SegFolderDataset: images/ + labels/ paired by stem, split and list files, errors."""
import cv2
import numpy as np
import pytest

from deeplab_gluon.data import DataError, SegFolderDataset, wants_split, write_image


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(0)
    for stem, value in (("a", 1), ("b", 2), ("c", 3)):
        write_image(tmp_path / "images" / f"{stem}.jpg", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        label = np.full((12, 16), value, dtype=np.uint8)
        label[0] = 255
        cv2.imwrite(str(tmp_path / "labels" / f"{stem}.png"), label)
    return tmp_path


def test_pairs_by_stem(folder):
    dataset = SegFolderDataset(folder, num_classes=4)
    assert dataset.ids == ["a", "b", "c"] and len(dataset) == 3
    assert dataset.classes == ["class0", "class1", "class2", "class3"] and dataset.num_classes == 4
    assert dataset.ignore_label == 255
    image, label = dataset[1]
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert label.dtype == np.uint8 and set(np.unique(label)) == {2, 255}
    assert dataset.image_path(1) == folder / "images" / "b.jpg"
    assert dataset.label_path(1) == folder / "labels" / "b.png"


def test_split_file_and_list_file(folder):
    (folder / "train.txt").write_text("c\na\n")
    assert SegFolderDataset(folder, "train", num_classes=4).ids == ["c", "a"]
    (folder / "pairs.txt").write_text("# image label\nimages/b.jpg labels/b.png\n\nimages/a.jpg labels/c.png\n")
    dataset = SegFolderDataset(folder, list_file="pairs.txt", classes=["bg", "x", "y", "z"])
    assert dataset.ids == ["b", "a"] and dataset.classes == ["bg", "x", "y", "z"]
    assert set(np.unique(dataset[1][1])) == {3, 255}  # the label the list file names, not the stem's


def test_custom_ignore_label_and_out_of_range(folder):
    label = np.zeros((12, 16), dtype=np.uint8)
    label[:, 8:] = 2
    label[0] = 3  # this dataset's void value
    cv2.imwrite(str(folder / "labels" / "c.png"), label)
    dataset = SegFolderDataset(folder, num_classes=3, ignore_label=3)
    assert dataset.ignore_label == 3
    np.testing.assert_array_equal(dataset[2][1], label)
    # 255 is not void here, and not a class either.
    with pytest.raises(DataError, match=r"labels/a\.png: label values \[255\] are neither classes 0..2 "
                                        r"nor ignore_label 3"):
        dataset[0]


def test_errors_name_the_path(folder, tmp_path):
    with pytest.raises(DataError, match=r"dataset folder not found: .*missing"):
        SegFolderDataset(tmp_path / "missing", num_classes=2)
    with pytest.raises(DataError, match=r"split list not found: .*val\.txt"):
        SegFolderDataset(folder, "val", num_classes=4)
    (folder / "labels" / "b.png").unlink()
    with pytest.raises(DataError, match=r"label not found for .*b\.jpg: expected .*labels/b\.png"):
        SegFolderDataset(folder, num_classes=4)
    (folder / "bad.txt").write_text("images/a.jpg labels/zzz.png\n")
    with pytest.raises(DataError, match=r"file not found: .*zzz\.png \(listed in .*bad\.txt:1 "):
        SegFolderDataset(folder, list_file="bad.txt", num_classes=4)
    with pytest.raises(DataError, match="num_classes or classes"):
        SegFolderDataset(folder)


def test_relative_root_with_a_split_list(folder, monkeypatch):
    """Issue 19.1: a relative root was joined twice (mydata/mydata/train.txt) when a split list was used."""
    (folder / "mydata").mkdir()
    for name in ("images", "labels"):
        (folder / name).rename(folder / "mydata" / name)
    (folder / "mydata" / "train.txt").write_text("b\nc\n")
    monkeypatch.chdir(folder)
    for root in ("mydata", "./mydata"):
        dataset = SegFolderDataset(root, "train", num_classes=12)  # the README's form
        assert dataset.ids == ["b", "c"]
        image, label = dataset[0]
        assert image.shape == (12, 16, 3) and set(np.unique(label)) == {2, 255}
    assert SegFolderDataset("mydata", list_file="train.txt", num_classes=4).ids == ["b", "c"]


def test_all_images_and_no_split_are_explicit(folder):
    """Issue 19.2: 'all' reads every image (no list file), 'none' is no split; a missing list says both."""
    (folder / "train.txt").write_text("c\n")
    for split in ("all", "ALL", "", None):
        assert SegFolderDataset(folder, split, num_classes=4).ids == ["a", "b", "c"]
    with pytest.raises(DataError, match=r"split list not found: .*val\.txt \(.*the split 'all' for every image"):
        SegFolderDataset(folder, "val", num_classes=4)
    with pytest.raises(DataError, match=r"split 'none' means no dataset"):
        SegFolderDataset(folder, "none", num_classes=4)
    assert not wants_split("none") and not wants_split("") and not wants_split(None) and not wants_split(" None ")
    assert wants_split("val") and wants_split("all")


def test_drsleep_style_list_paths_are_relative_to_root(folder, tmp_path_factory):
    """Issue 16: '/images/a.jpg /labels/a.png' lines (DrSleep's train.txt style) are relative to the root,
    a leading '/' that exists only as an absolute path stays absolute, and a split may name a .txt list."""
    (folder / "drsleep.txt").write_text("/images/a.jpg /labels/c.png\n/images/b.jpg /labels/b.png\n")
    dataset = SegFolderDataset(folder, "drsleep", num_classes=4)
    assert dataset.ids == ["a", "b"] and dataset.label_path(0) == folder / "labels" / "c.png"
    assert set(np.unique(dataset[0][1])) == {3, 255}
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write_image(elsewhere / "d.jpg", np.zeros((12, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(elsewhere / "d.png"), np.ones((12, 16), dtype=np.uint8))
    (elsewhere / "lists.txt").write_text(f"{elsewhere / 'd.jpg'} {elsewhere / 'd.png'}\n/images/a.jpg /labels/a.png\n")
    dataset = SegFolderDataset(folder, str(elsewhere / "lists.txt"), num_classes=4)  # an absolute .txt split
    assert dataset.image_path(0) == elsewhere / "d.jpg" and dataset.image_path(1) == folder / "images" / "a.jpg"
    (folder / "lists").mkdir()
    (folder / "lists" / "bad.txt").write_text("/images/a.jpg /labels/zzz.png\n")
    with pytest.raises(DataError, match=r"file not found: .*/labels/zzz\.png \(listed in .*bad\.txt:1 as "
                                        r"'/labels/zzz\.png', relative to .*\)"):
        SegFolderDataset(folder, "lists/bad.txt", num_classes=4)


def test_classes_txt_gives_names_colours_and_count(folder):
    """Issue 16 / 18.4: classes.txt ('name' or 'name r g b') names the classes, colours them and gives
    num_classes, so a folder dataset needs no num_classes; without it the error is one clear line."""
    with pytest.raises(DataError, match=r"the number of classes is unknown: give num_classes or classes, or write "
                                        r".*classes\.txt \(one class name per line\)"):
        SegFolderDataset(folder, num_classes=0)  # train.py's default --num_classes 0
    (folder / "classes.txt").write_text("# name [r g b]\nsky 70 130 180\nroad 128 64 128\n\ntraffic sign 220 220 0\n"
                                        "car\n")
    for count in (None, 0, 4):
        dataset = SegFolderDataset(folder, "all", num_classes=count)
        assert dataset.classes == ["sky", "road", "traffic sign", "car"] and dataset.num_classes == 4
    assert dataset.palette.shape == (256, 3) and dataset.palette.dtype == np.uint8
    assert [tuple(c) for c in dataset.palette[:4]] == [(70, 130, 180), (128, 64, 128), (220, 220, 0), (128, 128, 0)]
    assert tuple(dataset.palette[255]) == (224, 224, 192)  # void keeps VOC's colour
    assert "classes from" in dataset.describe() and dataset.describe().startswith("folder 'all': 3 images, 4 classes")
    with pytest.raises(DataError, match=r"num_classes is 12 but .*classes\.txt lists 4 classes"):
        SegFolderDataset(folder, num_classes=12)
    (folder / "classes.txt").write_text("sky\nsky\n")
    with pytest.raises(DataError, match=r"classes\.txt:2: class 'sky' is listed twice"):
        SegFolderDataset(folder)


def test_class_file_outside_the_data_folder(folder, tmp_path_factory):
    """--classes FILE: names and colours from a class list elsewhere (a data folder one cannot write to)."""
    listing = tmp_path_factory.mktemp("recipe") / "names.txt"
    listing.write_text("# four\nsky 1 2 3\nroad\ncar 7 8 9\nbike\n")
    dataset = SegFolderDataset(folder, class_file=listing)
    assert dataset.classes == ["sky", "road", "car", "bike"] and dataset.num_classes == 4
    assert dataset.palette[0].tolist() == [1, 2, 3] and dataset.palette[2].tolist() == [7, 8, 9]
    assert f"classes from {listing}" in dataset.source
    with pytest.raises(DataError, match="num_classes is 5 but .*names.txt lists 4 classes"):
        SegFolderDataset(folder, class_file=listing, num_classes=5)
    with pytest.raises(DataError, match="class list not found: .*missing.txt"):
        SegFolderDataset(folder, class_file=listing.parent / "missing.txt")
