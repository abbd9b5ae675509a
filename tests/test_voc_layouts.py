"""The VOC layouts users already have, built from the real VOC sample: SBD as benchmark_RELEASE/ or as
gluoncv's VOCaug/, SegmentationClassAug/ alone, and DrSleep-style pair lists (issue 16)."""
import numpy as np
import pytest
from PIL import Image

import fake_voc
from deeplab_gluon.data import DataError, VOCSegDataset, get_dataset


def palette_indices(path):
    with Image.open(path) as png:
        return np.array(png, dtype=np.uint8)


@pytest.mark.parametrize("layout, words", [("VOCaug", "VOCaug/dataset (SBD in gluoncv's VOCaug layout)"),
                                           ("benchmark_RELEASE", "benchmark_RELEASE/dataset (SBD)")])
def test_train_aug_from_either_sbd_layout(voc_sample_root, tmp_path, layout, words):
    devkit = tmp_path / "VOCdevkit_aug"
    splits = fake_voc.build_devkit_from_sample(voc_sample_root, devkit, sbd_layout=layout)
    dataset = get_dataset("voc", devkit, "train_aug")
    expected = fake_voc.sample_train_aug(splits)
    assert dataset.ids == expected and len(expected) == 10
    sbd_only = [i for i in expected if i not in splits["voc_train"]]
    for index, sample_id in enumerate(dataset.ids):
        label_path = dataset.label_path(index)
        if sample_id in sbd_only:  # SBD's .mat, in the layout present
            assert label_path == devkit / layout / "dataset" / "cls" / f"{sample_id}.mat"
        else:  # VOC's own palette PNG wins where both exist
            assert label_path == devkit / "VOC2012" / "SegmentationClass" / f"{sample_id}.png"
    index = dataset.ids.index(sbd_only[0])
    real = palette_indices(voc_sample_root / "VOC2012" / "SegmentationClass" / f"{sbd_only[0]}.png")
    np.testing.assert_array_equal(dataset[index][1], np.where(real == 255, 0, real))
    line = dataset.describe()
    assert line.startswith(f"voc 'train_aug': 10 images, 21 classes, in {devkit} (computed from VOC2012 "
                           f"train/val and {words} train/val; labels: ")
    assert f"{len(expected) - len(sbd_only)} VOC2012/SegmentationClass" in line
    assert f"{len(sbd_only)} {layout}/dataset/cls" in line and "\n" not in line
    val = get_dataset("voc", devkit, "val")
    assert val.describe() == (f"voc 'val': 3 images, 21 classes, in {devkit} (list "
                              f"VOC2012/ImageSets/Segmentation/val.txt; labels: 3 VOC2012/SegmentationClass)")


def test_train_aug_from_segmentation_class_aug_alone(voc_sample_root, tmp_path):
    devkit = tmp_path / "VOCdevkit_aug"
    splits = fake_voc.build_devkit_from_sample(voc_sample_root, devkit, aug_labels=True)
    dataset = VOCSegDataset(devkit, "train_aug")
    assert dataset.ids == fake_voc.sample_train_aug(splits)
    aug = devkit / "VOC2012" / "SegmentationClassAug"
    for index, sample_id in enumerate(dataset.ids):
        own = sample_id in splits["voc_train"]
        expected = devkit / "VOC2012" / ("SegmentationClass" if own else "SegmentationClassAug") / f"{sample_id}.png"
        assert dataset.label_path(index) == expected
    index = next(i for i, s in enumerate(dataset.ids) if s not in splits["voc_train"])
    np.testing.assert_array_equal(dataset[index][1], palette_indices(aug / f"{dataset.ids[index]}.png"))
    assert "computed as the labels in VOC2012/SegmentationClassAug minus VOC2012 val" in dataset.describe()


def test_no_train_aug_source_names_every_place_looked(voc_sample_root, tmp_path):
    devkit = tmp_path / "VOCdevkit_aug"
    fake_voc.build_devkit_from_sample(voc_sample_root, devkit)
    with pytest.raises(DataError, match=r"train_aug\.txt, and it cannot be computed: .* no SBD "
                                        r"\(benchmark_RELEASE/dataset or VOCaug/dataset\) and no "
                                        r"VOC2012/SegmentationClassAug"):
        VOCSegDataset(devkit, "train_aug")


def drsleep_lines(ids):
    return "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids)


def test_drsleep_list_in_imagesets_and_as_a_file(voc_sample_root, tmp_path):
    """The DeepLab-ResNet (TF) train.txt: '/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png' lines,
    relative to VOC2012/, read from ImageSets, from a .txt beside the data, and with VOC2012/ as root."""
    devkit = tmp_path / "VOCdevkit_aug"
    splits = fake_voc.build_devkit_from_sample(voc_sample_root, devkit, aug_labels=True)
    ids = fake_voc.sample_train_aug(splits)[:5]
    voc2012 = devkit / "VOC2012"
    (voc2012 / "ImageSets" / "Segmentation" / "drsleep.txt").write_text(drsleep_lines(ids))
    (devkit / "train_drsleep.txt").write_text(drsleep_lines(ids))
    for root, split in ((devkit, "drsleep"), (devkit, "train_drsleep.txt"), (voc2012, "drsleep"),
                        (devkit, str(devkit / "train_drsleep.txt"))):
        dataset = VOCSegDataset(root, split)
        assert dataset.ids == ids
        assert dataset.image_path(0) == voc2012 / "JPEGImages" / f"{ids[0]}.jpg"
        assert dataset.label_path(0) == voc2012 / "SegmentationClassAug" / f"{ids[0]}.png"
    image, label = dataset[0]
    np.testing.assert_array_equal(label, palette_indices(voc2012 / "SegmentationClassAug" / f"{ids[0]}.png"))
    assert image.shape[:2] == label.shape
    (devkit / "bad.txt").write_text(f"/JPEGImages/{ids[0]}.jpg /SegmentationClassAug/missing.png\n")
    with pytest.raises(DataError, match=r"file not found: .*VOC2012/SegmentationClassAug/missing\.png \(listed in "
                                        r".*bad\.txt:1 as '/SegmentationClassAug/missing\.png'"):
        VOCSegDataset(devkit, "bad.txt")
