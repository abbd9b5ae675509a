"""VOCSegDataset on the real VOC sample and on small fake VOC + SBD trees."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import fake_voc
from deeplab_gluon.data import DataError, VOC_CLASSES, VOCSegDataset, compute_train_aug_ids, save_index_png

VOC_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "voc_sample"


@pytest.fixture(scope="module")
def voc_sample():
    if not (VOC_SAMPLE / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file():
        pytest.skip(f"VOC sample not found at {VOC_SAMPLE}")
    return VOCSegDataset(VOC_SAMPLE, "val")


def test_real_sample_items(voc_sample):
    listed = (VOC_SAMPLE / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert voc_sample.ids == listed and len(voc_sample) == len(listed) == 13
    assert voc_sample.classes == list(VOC_CLASSES) and voc_sample.num_classes == 21
    assert voc_sample.ignore_label == 255
    for index in range(len(voc_sample)):
        image, label = voc_sample[index]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert label.dtype == np.uint8 and label.shape == image.shape[:2]
        with Image.open(voc_sample.label_path(index)) as png:  # the palette indices, not the colours
            np.testing.assert_array_equal(label, np.array(png))
        assert set(np.unique(label)) <= set(range(21)) | {255}
    assert voc_sample.image_path(0) == VOC_SAMPLE / "VOC2012" / "JPEGImages" / f"{listed[0]}.jpg"


def test_real_sample_is_rgb(voc_sample):
    image, _ = voc_sample[0]
    with Image.open(voc_sample.image_path(0)) as jpeg:  # a second decoder, which returns RGB
        reference = np.asarray(jpeg.convert("RGB"), dtype=np.float64)
    # JPEG decoders differ by a grey level or two; swapped channels would differ by tens.
    assert np.abs(image - reference).mean() < 2.0
    assert np.abs(image[..., ::-1] - reference).mean() > 10.0


def test_voc2012_folder_as_root(voc_sample):
    direct = VOCSegDataset(VOC_SAMPLE / "VOC2012", "val")
    assert direct.ids == voc_sample.ids and direct.label_path(3) == voc_sample.label_path(3)


def test_transform_is_applied(voc_sample):
    calls = []

    def transform(image, label):
        calls.append((image.shape, label.shape))
        return "image", "label"

    dataset = VOCSegDataset(VOC_SAMPLE, "val", transform=transform)
    assert dataset[2] == ("image", "label")
    assert calls == [(voc_sample[2][0].shape, voc_sample[2][1].shape)]


def test_compute_train_aug_ids():
    ids = compute_train_aug_ids(["a", "b", "c"], ["d", "e"], ["b", "x", "y"], ["d", "z"])
    assert ids == ["a", "b", "c", "x", "y", "z"]


@pytest.fixture()
def devkit(tmp_path):
    fake_voc.write_voc(tmp_path / "VOCdevkit_aug" / "VOC2012")
    fake_voc.write_sbd(tmp_path / "VOCdevkit_aug" / "benchmark_RELEASE" / "dataset")
    return tmp_path / "VOCdevkit_aug"


def test_train_aug_from_sbd_lists_and_label_sources(devkit):
    dataset = VOCSegDataset(devkit, "train_aug")
    assert dataset.ids == fake_voc.TRAIN_AUG
    for index, sample_id in enumerate(dataset.ids):
        image, label = dataset[index]
        in_voc = sample_id in fake_voc.VOC_SPLITS["train"]
        # VOC's palette PNG wins over SBD's .mat for ids in both (2008_000002).
        assert dataset.label_path(index).suffix == (".png" if in_voc else ".mat")
        np.testing.assert_array_equal(label, fake_voc.fake_label(sample_id, "voc" if in_voc else "sbd"))
        assert label.dtype == np.uint8 and image.shape == fake_voc.IMAGE_SHAPE + (3,)
        expected_image_dir = "JPEGImages" if in_voc else "img"
        assert dataset.image_path(index).parent.name == expected_image_dir


def test_train_aug_list_file_wins(devkit):
    (devkit / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2008_000003\n2009_000011\n")
    assert VOCSegDataset(devkit, "train_aug").ids == ["2008_000003", "2009_000011"]


def test_segmentation_class_aug_fallback(devkit):
    voc2012 = devkit / "VOC2012"
    aug = voc2012 / "SegmentationClassAug"
    aug.mkdir()
    grey = fake_voc.fake_label("2008_000003", "voc")
    grey[0, 0] = 5
    cv2.imwrite(str(aug / "2008_000003.png"), grey)  # the shared aug labels are grey PNGs
    (voc2012 / "SegmentationClass" / "2008_000003.png").unlink()
    dataset = VOCSegDataset(devkit, "train")
    index = dataset.ids.index("2008_000003")
    assert dataset.label_path(index) == aug / "2008_000003.png"
    np.testing.assert_array_equal(dataset[index][1], grey)


def test_missing_label_fails_at_construction_naming_path(devkit):
    (devkit / "VOC2012" / "SegmentationClass" / "2008_000005.png").unlink()
    with pytest.raises(DataError, match=r"1 of 2 ids .*'val'.*SegmentationClass/2008_000005\.png"):
        VOCSegDataset(devkit, "val")


def test_missing_image_fails_at_construction_naming_path(devkit):
    (devkit / "VOC2012" / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(DataError, match=r"no image file.*JPEGImages/2008_000001\.jpg"):
        VOCSegDataset(devkit, "train")


def test_missing_split_and_root(devkit, tmp_path):
    with pytest.raises(DataError, match=r"split list not found: .*ImageSets/Segmentation/test\.txt"):
        VOCSegDataset(devkit, "test")
    shutil.rmtree(devkit / "benchmark_RELEASE")
    with pytest.raises(DataError, match=r"train_aug\.txt.*cannot be computed: .* no SBD \(benchmark_RELEASE/dataset "
                                        r"or VOCaug/dataset\) and no VOC2012/SegmentationClassAug"):
        VOCSegDataset(devkit, "train_aug")
    with pytest.raises(DataError, match=r"no VOC2012 dataset at .*nowhere"):
        VOCSegDataset(tmp_path / "nowhere", "val")


def test_bad_label_values_and_shapes_name_the_file(devkit):
    label_dir = devkit / "VOC2012" / "SegmentationClass"
    wrong = fake_voc.fake_label("2008_000004", "voc")
    wrong[0, 0] = 30  # not a VOC class, not void
    save_index_png(label_dir / "2008_000004.png", wrong)
    save_index_png(label_dir / "2008_000005.png", np.zeros((7, 7), dtype=np.uint8))
    dataset = VOCSegDataset(devkit, "val")
    with pytest.raises(DataError, match=r"2008_000004\.png: label values \[30\]"):
        dataset[0]
    with pytest.raises(DataError, match=r"2008_000005\.jpg is 30x20 but its label .*2008_000005\.png is 7x7"):
        dataset[1]
