"""The training run's steps as plain functions, and the flag combinations refused before any work."""
import os
from pathlib import Path

import pytest

from deeplab_gluon.checkpoint import Checkpoint, checkpoint_name
from deeplab_gluon.train import main, parse_config
from deeplab_gluon.cli import UsageError
from deeplab_gluon.trainer import TrainingError, should_checkpoint, should_validate, starting_point
from tiny_model import save_tiny_checkpoint, tiny_net

REPO = Path(__file__).resolve().parents[1]


def test_validation_and_checkpoint_schedule():
    # 10 iterations an epoch, 35 in all
    assert [it for it in range(1, 36) if should_validate(it, 35, 10, val_every=2)] == [20, 35]
    assert [it for it in range(1, 36) if should_validate(it, 35, 10, val_every=0)] == [35]
    assert [it for it in range(1, 36) if should_validate(it, 35, 10, val_every=2, val_every_iter=15)] == [15, 30, 35]
    assert [it for it in range(1, 36) if should_checkpoint(it, 35, 10, checkpoint_every=0)] == [10, 20, 30, 35]
    assert [it for it in range(1, 36) if should_checkpoint(it, 35, 10, checkpoint_every=15)] == [15, 30, 35]


@pytest.fixture(scope="module")
def run_with_checkpoints(tmp_path_factory):
    """A run folder named '3' holding checkpoints at iterations 3 (end of epoch 1) and 6."""
    folder = tmp_path_factory.mktemp("runs") / "3"
    net = tiny_net(num_classes=5)
    for iteration in (3, 6):
        path = save_tiny_checkpoint(folder, net, ["c"] * 5, iteration=iteration)
        meta = dict(Checkpoint.read(path).meta, epoch=iteration // 3, end_of_epoch=True)
        Checkpoint.write(path, net, None, meta)
    return folder


def test_resume_resolves_last_epoch_and_file(run_with_checkpoints):
    checkpoints = run_with_checkpoints / "checkpoints"
    assert starting_point("last", "", checkpoints).resume.iteration == 6
    assert starting_point("1", "", checkpoints).resume.iteration == 3  # the end of epoch 1
    assert starting_point(str(checkpoints / checkpoint_name(3)), "", checkpoints).resume.iteration == 3
    with pytest.raises(UsageError, match="already holds checkpoints: pass --resume last"):
        starting_point("-1", "", checkpoints)
    with pytest.raises(UsageError, match="--resume 7: no checkpoint from the end of epoch 7"):
        starting_point("7", "", checkpoints)


def test_init_from_is_always_a_path_never_an_epoch(run_with_checkpoints, tmp_path, monkeypatch):
    monkeypatch.chdir(run_with_checkpoints.parent)  # "3" is the run folder here
    start = starting_point("-1", "3", tmp_path / "new" / "checkpoints")
    assert start.resume is None and start.init.iteration == 6
    assert start.init.path == Path("3") / "checkpoints" / checkpoint_name(6)


def test_resume_last_without_checkpoints_starts_fresh_and_says_so(tmp_path):
    start = starting_point("last", "", tmp_path / "checkpoints")
    assert start.resume is None and start.init is None
    assert start.note == f"--resume last: no checkpoint in {tmp_path / 'checkpoints'} yet, starting fresh"


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "toy", "--num_classes", "3"],
     "--num_classes 3 is fewer than the 5 classes of the toy dataset, whose labels would be clipped"),
    (["--resume", "last", "--load_backbone_only", "1"], "--load_backbone_only 1 applies to --init_from"),
    (["--max_iter", "-5"], "--max_iter and --train_epochs cannot be negative"),
    (["--dataset", "folder"], f"--dataset folder needs --num_classes N or a class list {REPO / 'classes.txt'}"),
    (["--initial_learning_rate", "inf"], "--initial_learning_rate must be a positive number, got inf"),
])
def test_refused_before_any_work_with_one_line(flags, message, capsys):
    assert main(["--data_dir", str(REPO), "--max_iter", "1"] + flags) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train.py: error: {message}")

def test_each_dataset_trains_on_its_own_split_by_default(tmp_path):
    assert parse_config(["--dataset", "voc"]).training_split == "train_aug"
    assert parse_config(["--dataset", "toy"]).training_split == "train"
    assert parse_config(["--dataset", "cityscapes"]).training_split == "train"
    # a folder dataset: its train.txt when there is one, else every image
    assert parse_config(["--dataset", "folder", "--data_dir", str(tmp_path)]).training_split == "all"
    (tmp_path / "train.txt").write_text("a\n")
    assert parse_config(["--dataset", "folder", "--data_dir", str(tmp_path)]).training_split == "train"
    assert parse_config(["--dataset", "folder", "--train_split", "mine"]).training_split == "mine"


def test_a_bare_depth_is_read_as_resnet_v2_and_said_once(monkeypatch, capsys):
    import deeplab_gluon.trainer as trainer

    monkeypatch.setattr(trainer, "run_training", lambda config: {})
    assert main(["--dataset", "toy", "--max_iter", "1", "--base_architecture", "resnet101"]) == 0
    assert capsys.readouterr().out == "--base_architecture resnet101 is read as resnet101_v2 (ResNet-v2)\n"
    assert main(["--dataset", "toy", "--max_iter", "1", "--base_architecture", "resnet_v2_101"]) == 0
    assert capsys.readouterr().out == ""


def test_deterministic_is_set_before_the_network_is_built(monkeypatch):
    import deeplab_gluon.trainer as trainer

    seen = {}
    monkeypatch.delenv("MXNET_ENFORCE_DETERMINISM", raising=False)
    monkeypatch.setenv("MXNET_CUDNN_AUTOTUNE_DEFAULT", "1")  # a user's own value is overridden by the flag
    monkeypatch.setattr(trainer, "run_training", lambda config: seen.update(
        {key: os.environ.get(key) for key in ("MXNET_ENFORCE_DETERMINISM", "MXNET_CUDNN_AUTOTUNE_DEFAULT")}) or {})
    assert main(["--dataset", "toy", "--max_iter", "1", "--deterministic", "1"]) == 0
    assert seen == {"MXNET_ENFORCE_DETERMINISM": "1", "MXNET_CUDNN_AUTOTUNE_DEFAULT": "0"}


def test_the_top_level_api():
    import deeplab_gluon
    from deeplab_gluon import ConfusionMatrix, ModelSpec, get_deeplab, get_model, list_models, load_model, predict_labels

    assert callable(get_model) and callable(load_model) and callable(predict_labels) and callable(get_deeplab)
    assert ModelSpec().backbone == "resnet50_v2" and ConfusionMatrix(3).matrix.shape == (3, 3)
    assert "deeplabv3_resnet50_v2_vortex" in list_models()
    with pytest.raises(AttributeError, match="no attribute 'DeepLab'"):
        deeplab_gluon.DeepLab


@pytest.mark.slow
def test_a_validation_split_without_valid_pixels_neither_breaks_the_summary_nor_resume(tmp_path):
    import json

    import numpy as np

    from deeplab_gluon.data import make_toy_dataset, save_index_png
    from train_runs import train_flags

    root = tmp_path / "toy"
    make_toy_dataset(root, num_train=8, num_val=2, image_size=(40, 40), seed=0)
    voc = root / "VOC2012"
    for sample_id in (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split():
        save_index_png(voc / "SegmentationClass" / f"{sample_id}.png", np.full((40, 40), 255, np.uint8))
    run = tmp_path / "run"
    assert main(train_flags(root, run, max_iter=2)) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_mIoU"] is None and summary["final"]["mIoU"] is None
    assert main(train_flags(root, run, max_iter=4, resume="last", allow_config_change=1)) == 0
    assert json.loads((run / "summary.json").read_text())["iteration"] == 4


def test_a_pretrained_file_that_is_no_parameter_file_is_one_line(tmp_path, capsys):
    from deeplab_gluon.data import make_toy_dataset

    make_toy_dataset(tmp_path / "toy", num_train=4, num_val=1, image_size=(32, 32), seed=0)
    weights = tmp_path / "resnet18_v2.params"
    weights.write_text("not weights")
    code = main(["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--max_iter", "1", "--batch_size", "2",
                 "--base_architecture", "resnet_v2_18", "--crop_size", "32", "--num_workers", "0",
                 "--output_dir", str(tmp_path / "run"), "--pre_trained_model", str(weights)])
    assert code == 1
    assert capsys.readouterr().err == (f"train.py: error: --pre_trained_model: {weights} is not a parameter file: "
                                       f"Invalid NDArray file format\n")


def test_iter_size_and_val_limit_shape_the_data(tmp_path):
    from deeplab_gluon.data import make_toy_dataset
    from deeplab_gluon.trainer import load_data

    make_toy_dataset(tmp_path / "toy", num_train=12, num_val=5, image_size=(32, 32), seed=0)
    flags = ["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--batch_size", "2", "--train_epochs", "2"]
    plain = load_data(parse_config(flags))
    assert (plain.iterations_per_epoch, plain.max_iter, len(plain.val_set)) == (6, 12, 5)
    accumulated = load_data(parse_config(flags + ["--iter_size", "3", "--val_limit", "2"]))
    # an update takes 2 x 3 images: 12 images make 2 updates an epoch
    assert (accumulated.iterations_per_epoch, accumulated.max_iter, len(accumulated.val_set)) == (2, 4, 2)


def test_a_bad_validation_label_is_found_before_training(tmp_path, capsys):
    import numpy as np

    from deeplab_gluon.data import make_toy_dataset, save_index_png
    from deeplab_gluon.trainer import load_data

    make_toy_dataset(tmp_path / "toy", num_train=4, num_val=3, image_size=(32, 32), seed=0)
    voc = tmp_path / "toy" / "VOC2012"
    bad_id = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[1]
    save_index_png(voc / "SegmentationClass" / f"{bad_id}.png", np.full((32, 32), 9, np.uint8))  # 5 classes
    flags = ["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--max_iter", "1", "--batch_size", "2",
             "--output_dir", str(tmp_path / "run"), "--progress", "0"]
    with pytest.raises(TrainingError, match=rf"validation split: .*{bad_id}.png: label values \[9\] .*"
                                            r"pass --skip_bad_samples 1 to leave bad samples out"):
        load_data(parse_config(flags + ["--skip_bad_samples", "0"]))
    kept = load_data(parse_config(flags)).val_set  # --skip_bad_samples 1, the default
    assert len(kept) == 2 and bad_id not in kept.ids
    assert f"{bad_id}.png: label values [9]" in (tmp_path / "run" / "bad_samples.txt").read_text()
    assert capsys.readouterr().err.count("skipping a bad sample") == 1
