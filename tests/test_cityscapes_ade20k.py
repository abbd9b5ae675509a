"""Cityscapes (labelIds -> 19 train ids) and ADE20K (150 classes, 0 ignored) on tiny fakes of their layouts."""
import numpy as np
import pytest

import fake_scenes
from deeplab_gluon.data import (ADE20K_CLASSES, CITYSCAPES_CLASSES, DATASETS, DataError, checkpoint_palette,
                                get_dataset, palette_colours, voc_palette)
from deeplab_gluon.data.ade20k import shifted_label_table
from deeplab_gluon.data.cityscapes import train_id_table


def test_registered_by_name():
    assert "cityscapes" in DATASETS and "ade20k" in DATASETS


def test_cityscapes_train_ids_by_hand():
    table = train_id_table()
    assert table.shape == (256,) and table.dtype == np.uint8
    assert table[fake_scenes.CITYSCAPES_ROW].tolist() == fake_scenes.CITYSCAPES_ROW_TRAIN_IDS
    assert sorted(set(table.tolist()) - {255}) == list(range(19))  # every train id reached once
    assert table[34] == table[255] == table[1] == 255


def test_cityscapes_dataset(tmp_path):
    fake_scenes.write_cityscapes(tmp_path)
    train = get_dataset("cityscapes", tmp_path, "train")
    assert train.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bochum/bochum_000000_000313"]
    assert train.classes == list(CITYSCAPES_CLASSES) and train.num_classes == 19 and train.ignore_label == 255
    assert train.label_path(2) == tmp_path / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelIds.png"
    for index in range(len(train)):
        image, label = train[index]
        assert image.shape == fake_scenes.SHAPE + (3,) and label.dtype == np.uint8
        expected = fake_scenes.label_rows(fake_scenes.CITYSCAPES_ROW_TRAIN_IDS, index if index < 2 else 0)
        np.testing.assert_array_equal(label, expected)
    assert tuple(train.palette[0]) == (128, 64, 128) and tuple(train.palette[18]) == (119, 11, 32)  # road, bicycle
    assert train.classes[13] == "car" and tuple(train.palette[13]) == (0, 0, 142)
    line = train.describe()
    assert line.startswith("cityscapes 'train': 3 images, 19 classes, in ") and "2 cities" in line
    assert len(get_dataset("cityscapes", tmp_path, "val")) == 1


def test_cityscapes_errors_name_the_path(tmp_path):
    fake_scenes.write_cityscapes(tmp_path)
    with pytest.raises(DataError, match=r"no Cityscapes split 'test' at .*: expected .*leftImg8bit/test/<city>/"):
        get_dataset("cityscapes", tmp_path, "test")
    (tmp_path / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match=r"1 of 3 images of Cityscapes split 'train' have no label, first: "
                                        r".*bochum_000000_000313_gtFine_labelIds\.png"):
        get_dataset("cityscapes", tmp_path, "train")


def test_ade20k_shift_by_hand():
    table = shifted_label_table()
    assert table[fake_scenes.ADE20K_ROW].tolist() == fake_scenes.ADE20K_ROW_CLASSES


def test_ade20k_dataset(tmp_path):
    folder = fake_scenes.write_ade20k(tmp_path)
    for root in (tmp_path, folder):  # the folder itself or its parent
        train = get_dataset("ade20k", root, "train")
        assert train.ids == ["ADE_train_00000001", "ADE_train_00000002"]
    assert train.classes == list(ADE20K_CLASSES) and train.num_classes == 150 and train.ignore_label == 255
    assert train.classes[0] == "wall" and train.classes[7] == "bed" and train.classes[149] == "flag"
    for index in range(len(train)):
        image, label = train[index]
        assert image.shape == fake_scenes.SHAPE + (3,)
        np.testing.assert_array_equal(label, fake_scenes.label_rows(fake_scenes.ADE20K_ROW_CLASSES, index))
    assert tuple(train.palette[0]) == (120, 120, 120) and tuple(train.palette[149]) == (92, 0, 255)
    assert [train.ids for train in (get_dataset("ade20k", tmp_path, s) for s in ("val", "validation"))] == \
        [["ADE_val_00000001"]] * 2
    with pytest.raises(DataError, match=r"unknown ADE20K split 'test'"):
        get_dataset("ade20k", tmp_path, "test")
    with pytest.raises(DataError, match=r"no ADE20K dataset at .*nowhere"):
        get_dataset("ade20k", tmp_path / "nowhere", "train")


def test_annotation_past_150_names_the_file(tmp_path):
    folder = fake_scenes.write_ade20k(tmp_path)
    fake_scenes._grey_png(folder / "annotations" / "training" / "ADE_train_00000002.png",
                          np.full(fake_scenes.SHAPE, 151))
    with pytest.raises(DataError, match=r"ADE_train_00000002\.png: label values \[150\] are neither classes 0..149"):
        get_dataset("ade20k", tmp_path, "train")[1]


def test_checkpoint_palette_comes_from_the_dataset(tmp_path):
    fake_scenes.write_cityscapes(tmp_path)
    dataset = get_dataset("cityscapes", tmp_path, "val")
    stored = palette_colours(dataset)
    assert len(stored) == 19 and stored[0] == [128, 64, 128]
    np.testing.assert_array_equal(checkpoint_palette({"palette": stored}), dataset.palette)
    # checkpoints written before the palette was stored: the dataset's name decides
    np.testing.assert_array_equal(checkpoint_palette({"config": {"dataset": "cityscapes"}}), dataset.palette)
    np.testing.assert_array_equal(checkpoint_palette({"config": {"dataset": "voc"}}), voc_palette())
    np.testing.assert_array_equal(checkpoint_palette({}), voc_palette())
