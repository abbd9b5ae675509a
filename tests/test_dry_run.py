"""train.py --dry_run 1, --init_from taking the checkpoint's network, convert_gluoncv's refusals."""
from pathlib import Path

import pytest

from deeplab_gluon import convert_gluoncv
from deeplab_gluon.data import make_toy_dataset
from deeplab_gluon.train import main, parse_config
from fake_voc import TRAIN_AUG, VOC_SPLITS, write_sbd, write_voc
from tiny_model import save_tiny_checkpoint, tiny_net

CLASSES = ["background", "a", "b", "c", "d"]


@pytest.fixture(scope="module")
def vortex_aux_checkpoint(tmp_path_factory):
    """A ResNet-18-v2 Vortex checkpoint with the auxiliary head, at output stride 8, 5 classes."""
    folder = tmp_path_factory.mktemp("init")
    return save_tiny_checkpoint(folder, tiny_net(5, head="vortex", output_stride=8, aux=True), CLASSES,
                                head="vortex", output_stride=8, aux=True)


def test_init_from_takes_the_network_the_checkpoint_records(vortex_aux_checkpoint, tmp_path):
    config = parse_config(["--init_from", str(vortex_aux_checkpoint), "--dataset", "toy", "--max_iter", "1",
                           "--output_dir", str(tmp_path / "run")])
    assert (config.backbone, config.head, config.output_stride, config.aux) == ("resnet18_v2", "vortex", 8, True)
    assert config.taken_from_checkpoint == ["--base_architecture resnet18_v2", "--aspp_or_vortex vortex",
                                            "--output_stride 8", "--aux 1"]


def test_flags_given_win_over_the_checkpoint(vortex_aux_checkpoint, tmp_path):
    config = parse_config(["--init_from", str(vortex_aux_checkpoint), "--dataset", "toy", "--max_iter", "1",
                           "--output_stride", "16", "--aspp_or_vortex", "1", "--output_dir", str(tmp_path / "run")])
    assert (config.backbone, config.head, config.output_stride, config.aux) == ("resnet18_v2", "aspp", 16, True)
    backbone_only = parse_config(["--init_from", str(vortex_aux_checkpoint), "--load_backbone_only", "1",
                                  "--dataset", "toy", "--max_iter", "1"])
    assert (backbone_only.backbone, backbone_only.head, backbone_only.aux) == ("resnet101_v2", "aspp", False)
    assert parse_config(["--dataset", "toy", "--max_iter", "1"]).taken_from_checkpoint == ()


def test_dry_run_of_a_fine_tune_prints_the_resolved_run_and_trains_nothing(vortex_aux_checkpoint, tmp_path,
                                                                          capsys):
    toy = tmp_path / "toy"
    make_toy_dataset(toy, num_train=6, num_val=3, image_size=(24, 24), seed=0)
    out = tmp_path / "run"
    assert main(["--init_from", str(vortex_aux_checkpoint), "--dataset", "toy", "--data_dir", str(toy),
                 "--max_iter", "3", "--gpus", "-1", "--output_dir", str(out), "--dry_run", "1"]) == 0
    printed = capsys.readouterr().out
    assert "the checkpoint's network: --base_architecture resnet18_v2 --aspp_or_vortex vortex" in printed
    assert "train: toy 'train': 6 images" in printed and "val: toy 'val': 3 images" in printed
    assert "model: deeplabv3_resnet18_v2_vortex, output stride 8, 5 classes" in printed
    assert f"start: weights from {vortex_aux_checkpoint}" in printed
    assert "  --aux 1\n" in printed and "  --max_iter 3\n" in printed
    assert not out.exists()


def test_dry_run_refuses_a_checkpoint_of_another_class_count(vortex_aux_checkpoint, tmp_path, capsys):
    root = tmp_path / "VOCdevkit_aug"
    write_voc(root / "VOC2012")
    write_sbd(root / "benchmark_RELEASE" / "dataset")
    assert main(["--init_from", str(vortex_aux_checkpoint), "--dataset", "voc", "--data_dir", str(root),
                 "--train_split", "train_aug", "--max_iter", "3", "--gpus", "-1",
                 "--output_dir", str(tmp_path / "run"), "--dry_run", "1"]) == 2
    captured = capsys.readouterr()
    assert f"voc 'train_aug': {len(TRAIN_AUG)} images" in captured.out
    assert f"voc 'val': {len(VOC_SPLITS['val'])} images" in captured.out
    assert captured.err.strip().splitlines() == [
        f"train.py: error: --init_from: {vortex_aux_checkpoint} does not fit this model: num_classes: checkpoint "
        f"has 5, this run has 21; pass --load_backbone_only 1 to take its backbone alone"]


def test_dry_run_names_a_missing_split_list(tmp_path, capsys):
    root = tmp_path / "VOCdevkit_aug"
    write_voc(root / "VOC2012")
    assert main(["--dataset", "voc", "--data_dir", str(root), "--train_split", "train_aug", "--max_iter", "3",
                 "--gpus", "-1", "--output_dir", str(tmp_path / "run"), "--dry_run", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("train.py: error: --train_split train_aug: ") and "\n" not in error


def test_dry_run_refuses_an_imagenet_file_of_another_network(tmp_path, capsys):
    import mxnet as mx
    wrong = tmp_path / "not_a_backbone.params"
    mx.nd.save(str(wrong), {"fc.weight": mx.nd.zeros((2, 2))})
    assert main(["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--base_architecture", "resnet_v2_18",
                 "--pre_trained_model", str(wrong), "--max_iter", "3", "--gpus", "-1",
                 "--output_dir", str(tmp_path / "run"), "--dry_run", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"train.py: error: --pre_trained_model: ") and "\n" not in error
    assert not (tmp_path / "toy").exists()  # a dry run writes no toy data either


@pytest.mark.parametrize("name, why", [
    ("deeplab_resnest101_ade", "a ResNeSt backbone"),
    ("deeplab_v3b_plus_wideresnet_citys", "WideResNet-38"),
    ("deeplab_resnet101_voc_int8", "a quantized MXNet symbol"),
])
def test_convert_refuses_the_gluoncv_deeplabs_it_cannot_express(name, why, tmp_path, capsys):
    assert convert_gluoncv.main(["--model", name, "--params", str(tmp_path / "x.params"),
                                 "--output", str(tmp_path / "x.ckpt")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"convert_gluoncv: error: argument --model: {name} cannot be converted: it is ")
    assert why in error and error.endswith("supported: " + ", ".join(convert_gluoncv.GLUONCV_MODELS))
    assert "\n" not in error
