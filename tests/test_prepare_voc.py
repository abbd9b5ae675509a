"""prepare_voc on small archives built here in the official layouts (no network)."""
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import fake_voc
from deeplab_gluon.data import DataError, VOCSegDataset
from deeplab_gluon.data.prepare_voc import extract_folder, prepare_voc

REPO = Path(__file__).resolve().parents[1]
COUNTS = {"voc_train": 3, "voc_val": 2, "sbd_train": 3, "sbd_val": 2, "train_aug": 6}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """VOCtrainval-style tar (VOCdevkit/VOC2012/...) and benchmark.tgz (benchmark_RELEASE/dataset/...)."""
    root = tmp_path_factory.mktemp("sources")
    fake_voc.write_voc(root / "VOCdevkit" / "VOC2012")
    fake_voc.write_sbd(root / "benchmark_RELEASE" / "dataset")
    with tarfile.open(root / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(root / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(root / "benchmark.tgz", "w:gz") as tar:
        tar.add(root / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    return root


def check_result(out):
    lists = out / "VOC2012" / "ImageSets" / "Segmentation"
    assert (lists / "train_aug.txt").read_text().split() == fake_voc.TRAIN_AUG
    dataset = VOCSegDataset(out, "train_aug")
    assert len(dataset) == 6
    for index, sample_id in enumerate(dataset.ids):
        source = "voc" if sample_id in fake_voc.VOC_SPLITS["train"] else "sbd"
        image, label = dataset[index]
        np.testing.assert_array_equal(label, fake_voc.fake_label(sample_id, source))
        assert image.shape == fake_voc.IMAGE_SHAPE + (3,)
    assert len(VOCSegDataset(out, "val")) == 2


def test_from_archives(sources, tmp_path):
    out = tmp_path / "VOCdevkit_aug"
    counts = prepare_voc(out, sources / "VOCtrainval_11-May-2012.tar", sources / "benchmark.tgz", progress=False)
    assert counts == COUNTS
    assert (out / "benchmark_RELEASE" / "dataset" / "cls" / "2009_000010.mat").is_file()
    check_result(out)
    # Run again on the result alone: nothing to extract, the list is rewritten identically.
    assert prepare_voc(out, progress=False) == COUNTS


def test_from_extracted_folders(sources, tmp_path):
    out = tmp_path / "VOCdevkit_aug"
    stale = sources / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt"
    stale.write_text("old list\n")
    counts = prepare_voc(out, sources / "VOCdevkit", sources / "benchmark_RELEASE", progress=False)
    assert counts == COUNTS
    check_result(out)
    # the user's extracted copy is left as it was, though files are hard-linked when possible
    assert stale.read_text() == "old list\n"


def test_without_sbd(sources, tmp_path):
    out = tmp_path / "voc_only"
    assert prepare_voc(out, sources / "VOCtrainval_11-May-2012.tar", progress=False) == {"voc_train": 3, "voc_val": 2}
    with pytest.raises(DataError, match="train_aug"):
        VOCSegDataset(out, "train_aug")


def test_unsafe_members_are_skipped(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("VOCdevkit/VOC2012/../../escaped.txt", "VOCdevkit/VOC2012/ok.txt"):
            data = b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert extract_folder(archive, "VOC2012", tmp_path / "out", progress=False) == 1
    assert (tmp_path / "out" / "ok.txt").is_file() and not (tmp_path / "escaped.txt").exists()
    with pytest.raises(DataError, match=r"evil\.tar holds no benchmark_RELEASE/ folder"):
        extract_folder(archive, "benchmark_RELEASE", tmp_path / "out", progress=False)


def test_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"VOC2012 source not found: .*missing\.tar"):
        prepare_voc(tmp_path / "out", tmp_path / "missing.tar", progress=False)
    with pytest.raises(DataError, match=r"no VOC 2012 at .*out/VOC2012"):
        prepare_voc(tmp_path / "out", progress=False)
    (tmp_path / "broken.tar").write_bytes(b"this is not a tar file")
    with pytest.raises(DataError, match=r"cannot read archive .*broken\.tar"):
        prepare_voc(tmp_path / "out", tmp_path / "broken.tar", progress=False)


def test_script(sources, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = str(REPO / "scripts" / "prepare_voc.py")
    result = subprocess.run([sys.executable, script, "--voc", str(sources / "VOCtrainval_11-May-2012.tar"),
                             "--sbd", str(sources / "benchmark.tgz"), "--out", str(tmp_path / "aug")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train_aug       6  (official archives: 10582)" in result.stdout
    missing = tmp_path / "nope.tar"
    result = subprocess.run([sys.executable, script, "--voc", str(missing), "--out", str(tmp_path / "x")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == f"error: VOC2012 source not found: {missing}"
