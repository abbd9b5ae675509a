"""``python -m deeplab_gluon.predict``: palette PNGs, overlays, probabilities, input lists, one-line errors."""

import cv2
import numpy as np
import pytest
from PIL import Image

from deeplab_gluon.data import VOC_CLASSES, read_image, save_index_png, voc_palette, write_image
from deeplab_gluon.inference import image_to_batch, predict_labels, predict_probs
from deeplab_gluon.predict import main
from deeplab_gluon.visualize import overlay
from tiny_model import save_tiny_checkpoint, tiny_net

SIZES = {"wide": (37, 53), "tall": (48, 30), "odd": (25, 41)}  # (height, width), none seen by any other test


def smooth_image(rng, height, width):
    """Random colours varying smoothly, so that JPEG keeps them close (white noise it would not)."""
    coarse = rng.randint(0, 256, size=(4, 5, 3)).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 21-class soft random-weight checkpoint; images in a folder and in a VOC-layout tree."""
    root = tmp_path_factory.mktemp("predict")
    net = tiny_net(num_classes=21, seed=4)
    checkpoint = save_tiny_checkpoint(root / "run", net, VOC_CLASSES)
    rng = np.random.RandomState(0)
    folder = root / "images"
    folder.mkdir()
    for stem, (height, width) in SIZES.items():
        suffix = ".png" if stem == "tall" else ".jpg"
        write_image(folder / f"{stem}{suffix}", smooth_image(rng, height, width))
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir(parents=True)
    for sample_id in ("2007_000001", "2007_000002"):
        write_image(voc / "JPEGImages" / f"{sample_id}.jpg", rng.randint(0, 256, size=(33, 45, 3)).astype(np.uint8))
        save_index_png(voc / "SegmentationClass" / f"{sample_id}.png", np.full((33, 45), 15, np.uint8))
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n2007_000002\n")
    return {"net": net, "checkpoint": checkpoint, "folder": folder, "voc": voc, "root": root}


def predict(args, capsys):
    code = main([str(a) for a in args] + ["--progress", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_outputs_have_the_image_size_voc_palette_and_the_predicted_indices(setup, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = predict(["--checkpoint", setup["checkpoint"], "--input", setup["folder"], "--output_dir", out,
                                 "--save_probs"], capsys)
    assert code == 0, err
    assert "wrote predictions of 3 images" in stdout
    palette = voc_palette().ravel().tolist()
    seen_classes = set()
    for path in sorted(setup["folder"].iterdir()):
        height, width = SIZES[path.stem]
        image = read_image(path)
        batch = image_to_batch(image)
        expected = predict_labels(setup["net"], batch).asnumpy()
        with Image.open(out / f"{path.stem}.png") as png:
            assert png.mode == "P" and png.size == (width, height)
            assert png.getpalette() == palette
            indices = np.array(png)
        np.testing.assert_array_equal(indices, expected)
        seen_classes |= set(np.unique(indices).tolist())
        with Image.open(out / f"{path.stem}_overlay.jpg") as jpeg:
            assert jpeg.format == "JPEG" and jpeg.size == (width, height)
            blended = np.array(jpeg.convert("RGB"), dtype=np.float64)
        hand = overlay(image, expected, 0.5, keep_class=0).astype(np.float64)
        error = np.abs(blended - hand).mean()  # JPEG is lossy: near the hand blend, far from the bare image
        assert error < 4 and error < np.abs(blended - image).mean() / 3
        probs = np.load(out / f"{path.stem}_probs.npy")
        assert probs.dtype == np.float16 and probs.shape == (21, height, width)
        np.testing.assert_array_equal(probs, predict_probs(setup["net"], batch).asnumpy()[0].astype(np.float16))
    assert len(seen_classes) > 1  # soft logits: the indices are a real check, not all zeros


def test_list_files_with_paths_and_voc_ids(setup, tmp_path, capsys):
    listing = setup["root"] / "mixed.txt"  # relative to the list's folder, then absolute
    listing.write_text(f"# a comment\nimages/wide.jpg\n\n{setup['folder'] / 'odd.jpg'}\n")
    voc_list = setup["voc"] / "ImageSets" / "Segmentation" / "val.txt"
    out = tmp_path / "out"
    code, _, err = predict(["--checkpoint", setup["checkpoint"], "--input", listing, voc_list, "--output_dir", out,
                            "--scales", "0.75,1", "--flip"], capsys)
    assert code == 0, err
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["2007_000001.png", "2007_000002.png", "odd.png", "wide.png"]
    assert not list(out.glob("*.npy"))  # --save_probs not given
    image = read_image(setup["voc"] / "JPEGImages" / "2007_000002.jpg")
    expected = predict_labels(setup["net"], image_to_batch(image), scales=(0.75, 1.0), flip=True).asnumpy()
    with Image.open(out / "2007_000002.png") as png:
        np.testing.assert_array_equal(np.array(png), expected)

    out = tmp_path / "limited"
    code, _, err = predict(["--checkpoint", setup["checkpoint"], "--input", voc_list, setup["folder"],
                            "--output_dir", out, "--limit", "3"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["2007_000001.png", "2007_000002.png", "odd.png"]  # folders sorted by name


def test_compare_gt_writes_three_panel_pictures(setup, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = predict(["--checkpoint", setup["checkpoint"], "--input", setup["voc"] / "JPEGImages",
                            "--output_dir", out, "--compare_gt", setup["voc"] / "SegmentationClass"], capsys)
    assert code == 0, err
    with Image.open(out / "2007_000001_compare.png") as picture:
        assert picture.format == "PNG"
        rgb = np.array(picture.convert("RGB"))
    person = voc_palette()[15]  # the ground truth is all "person": the right third of the picture
    is_person = (rgb == person).all(axis=2)
    columns = np.nonzero(is_person.sum(axis=0) > rgb.shape[0] // 3)[0]
    assert columns.min() > 2 * rgb.shape[1] // 3


@pytest.mark.parametrize("make_args, message", [
    (lambda s, t: ["--input", t / "missing.jpg"], "--input {t}/missing.jpg: no such file or folder"),
    (lambda s, t: ["--input", t / "notes.jpg", "--strict", "1"], "--input {t}/notes.jpg: not an image OpenCV can read"),
    (lambda s, t: ["--input", t / "list.txt"], "{t}/list.txt:2: 'nope' is neither an image file nor a VOC id"),
    (lambda s, t: ["--input", s["folder"], t / "twin" / "wide.jpg"], "two inputs share the name 'wide'"),
    (lambda s, t: ["--input", s["folder"], "--compare_gt", t], "--compare_gt: no ground truth for"),
    (lambda s, t: ["--input", s["folder"], "--gpus", "3"], "--gpus 3: GPU 3 does not exist"),
    (lambda s, t: ["--input", s["folder"], "--scales", "-1"], "argument --scales: must be positive numbers"),
    (lambda s, t: ["--input", s["folder"], "--overlay_alpha", "1.5"], "--overlay_alpha must lie in [0, 1]"),
    (lambda s, t: ["--input", s["folder"], "--output_dir", t / "notes.jpg"],
     "--output_dir {t}/notes.jpg exists and is not a folder"),
])
def test_user_mistakes_are_one_line_errors(setup, tmp_path, capsys, make_args, message):
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "list.txt").write_text(f"{setup['folder'] / 'wide.jpg'}\nnope\n")
    (tmp_path / "twin").mkdir()
    (tmp_path / "twin" / "wide.jpg").write_bytes((setup["folder"] / "wide.jpg").read_bytes())
    args = ["--checkpoint", setup["checkpoint"], "--output_dir", tmp_path / "out"] + make_args(setup, tmp_path)
    code, _, err = predict(args, capsys)
    assert code == 2
    assert err.startswith("predict: error: ") and err.count("\n") == 1
    assert message.format(t=tmp_path) in err


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = predict(["--checkpoint", tmp_path / "run", "--input", tmp_path, "--output_dir", tmp_path], capsys)
    assert code == 2 and err == f"predict: error: --checkpoint: no checkpoint at {tmp_path / 'run'}\n"


@pytest.fixture
def folder_with_bad_files(setup, tmp_path):
    """Two good images and, between them by name, an empty file, a text file and a truncated JPEG."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = (setup["folder"] / "wide.jpg").read_bytes()
    (folder / "a_good.jpg").write_bytes(good)
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_text.jpg").write_text("not an image")
    (folder / "d_truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "e_good.png").write_bytes((setup["folder"] / "tall.png").read_bytes())
    return folder


def test_unreadable_images_are_listed_at_the_end_and_the_others_predicted(setup, folder_with_bad_files, tmp_path,
                                                                         capsys):
    """Issue 18 item 6: one bad file no longer stops (or prevents) the predictions of the others."""
    folder, out = folder_with_bad_files, tmp_path / "out"
    code, stdout, err = predict(["--checkpoint", setup["checkpoint"], "--input", folder, "--output_dir", out], capsys)
    assert code == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["a_good.png", "e_good.png"]
    assert f"wrote predictions of 2 images to {out}" in stdout
    assert err.splitlines() == [
        f"predict: error: cannot decode image {folder / 'b_empty.jpg'}: the file is empty",
        f"predict: error: cannot decode image {folder / 'c_text.jpg'}",
        f"predict: error: cannot decode image {folder / 'd_truncated.jpg'}: truncated JPEG (no end-of-image marker)",
        "predict: error: 3 of 5 images could not be read (listed above); the other 2 were predicted"]


def test_strict_stops_at_the_first_unreadable_image(setup, folder_with_bad_files, tmp_path, capsys):
    folder, out = folder_with_bad_files, tmp_path / "out"
    args = ["--checkpoint", setup["checkpoint"], "--input", folder, "--output_dir", out, "--strict", "1"]
    code, _, err = predict(args, capsys)
    assert code == 2 and not out.exists()  # files that are no image at all: refused before any work
    assert err == f"predict: error: --input {folder / 'b_empty.jpg'}: not an image OpenCV can read\n"
    (folder / "b_empty.jpg").unlink()
    (folder / "c_text.jpg").unlink()
    code, _, err = predict(args, capsys)
    assert code == 1 and sorted(p.name for p in out.glob("*.png")) == ["a_good.png"]  # e_good.png never reached
    assert err == (f"predict: error: cannot decode image {folder / 'd_truncated.jpg'}: truncated JPEG (no end-of-image "
                   f"marker) (without --strict 1 the other images are predicted)\n")
