"""gluoncv's trained DeepLabV3 converted: the same outputs as gluoncv's own network, and every job runs on it.

gluoncv's networks are built here with random weights (BN statistics included) and saved with
``save_parameters``, as its model zoo's files are; nothing is downloaded. gluoncv's network only runs
at the crop size it was built for (480 x 480: its pooling branch and its output are resized to sizes
fixed at construction), so the outputs are compared there; ours also runs at other sizes.
"""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model as gluoncv_model
from PIL import Image

from deeplab_gluon import convert_gluoncv
from deeplab_gluon.checkpoint import Checkpoint
from deeplab_gluon.convert_gluoncv import GLUONCV_MODELS, checkpoint_meta, convert, gluoncv_name
from deeplab_gluon.data import (ADE20K_CLASSES, ADE20K_COLOURS, CITYSCAPES_CLASSES, CITYSCAPES_COLOURS, VOC_CLASSES,
                                make_toy_dataset, voc_palette)
from deeplab_gluon.models import ModelSpec
from deeplab_gluon.precision import file_digest
from fake_scenes import write_ade20k
from train_runs import run_train, train_flags
from zoo_weights import randomise_parameters

REPO = Path(__file__).resolve().parents[1]
CROP = 480  # gluoncv's DeepLabV3 crop_size, the only input size its network takes


def randomised_gluoncv(name, seed):
    """gluoncv's ``name`` with every parameter random, BN statistics included, so a misplaced one shows.

    The last BN of each residual branch gets a small gamma (as in zero-gamma initialisation), so the
    logits stay O(10) through 16-50 residual blocks instead of growing to 1e5, and a relative tolerance
    stays meaningful.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gluoncv initialises its heads itself; initialize() warns about them
        zoo = gluoncv_model(name, pretrained=False, pretrained_base=False)
        zoo.initialize()
    zoo.base_forward(mx.nd.zeros((1, 3, 32, 32)))  # finish the backbone's deferred shapes
    randomise_parameters(zoo._collect_params_with_prefix(), seed, small_gamma=lambda name: ".bn3." in name)
    return zoo


def saved_gluoncv(name, folder, seed=0):
    zoo = randomised_gluoncv(name, seed)
    path = Path(folder) / f"{name}.params"
    zoo.save_parameters(str(path))
    return zoo, path


def max_difference(gluoncv_outputs, our_outputs):
    """(max |difference|, logit range of gluoncv's) over the main and auxiliary outputs."""
    differences, ranges = [], []
    for theirs, ours in zip(gluoncv_outputs, our_outputs):
        theirs, ours = theirs.asnumpy(), ours.asnumpy()
        assert theirs.shape == ours.shape
        differences.append(float(np.abs(theirs - ours).max()))
        ranges.append(float(theirs.max() - theirs.min()))
    return max(differences), min(ranges)


def assert_same_outputs(zoo, net, seed):
    x = mx.nd.array(np.random.RandomState(seed).normal(size=(1, 3, CROP, CROP)))
    difference, logit_range = max_difference(zoo(x), net(x))
    print(f"max |gluoncv - ours| at {CROP}x{CROP}: {difference:.3g} (logit range {logit_range:.3g})")
    assert logit_range > 1 and difference <= 1e-4 * logit_range


def convert_command(*args):
    return subprocess.run([sys.executable, "-m", "deeplab_gluon.convert_gluoncv", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    """gluoncv's deeplab_resnet50_ade with random weights, its file, a tiny ADE20K tree, and the checkpoint
    converted from the command line."""
    folder = tmp_path_factory.mktemp("gluoncv")
    zoo, params = saved_gluoncv("deeplab_resnet50_ade", folder)
    data_dir = write_ade20k(folder)
    checkpoint = folder / "gcv" / "deeplab_resnet50_ade.ckpt"
    done = convert_command("--model", "deeplab_resnet50_ade", "--params", params, "--output", checkpoint,
                           "--data_dir", data_dir)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "is not gluoncv's published deeplab_resnet50_ade file" in done.stdout
    return {"zoo": zoo, "params": params, "checkpoint": checkpoint, "data_dir": data_dir}


def test_resnet50_ade_equals_gluoncv_at_its_size_and_runs_at_others(ade):
    saved = Checkpoint.open(ade["checkpoint"])
    assert saved.spec == ModelSpec("resnet50_v1s", "aspp", 150, 8, aux=True, head_variant="gluoncv",
                                   dilation_rule="gluoncv")
    assert saved.classes == list(ADE20K_CLASSES) and saved.meta["palette"] == [list(c) for c in ADE20K_COLOURS]
    assert saved.meta["config"] == {"dataset": "ade20k", "data_dir": str(ade["data_dir"]), "crop_size": CROP}
    assert saved.meta["source"]["gluoncv_model"] == "deeplab_resnet50_ade"
    net = saved.load()  # hybridized: one graph for both sizes
    assert_same_outputs(ade["zoo"], net, seed=1)
    logits, aux_logits = net(mx.nd.random.normal(shape=(1, 3, 321, 481)))
    assert logits.shape == aux_logits.shape == (1, 150, 321, 481)
    assert np.isfinite(logits.asnumpy()).all()


@pytest.mark.slow
def test_resnet101_voc_equals_gluoncv_at_its_size(tmp_path):
    zoo, params = saved_gluoncv("deeplab_resnet101_voc", tmp_path, seed=2)
    net, spec = convert(params, GLUONCV_MODELS["deeplab_resnet101_voc"])
    assert (spec.backbone, spec.num_classes, spec.head_variant, spec.aux) == ("resnet101_v1s", 21, "gluoncv", True)
    net.hybridize(static_alloc=True)
    assert_same_outputs(zoo, net, seed=3)


def test_cityscapes_and_coco_models_differ_only_in_their_classes(ade, tmp_path):
    """deeplab_resnet50_citys is deeplab_resnet50_ade with 19 classes; COCO's models predict VOC's 21."""
    zoo, params = saved_gluoncv("deeplab_resnet50_citys", tmp_path)
    citys_shapes = {name: p.shape for name, p in zoo._collect_params_with_prefix().items()}
    ade_shapes = {name: p.shape for name, p in ade["zoo"]._collect_params_with_prefix().items()}
    assert set(citys_shapes) == set(ade_shapes)
    assert {name for name in ade_shapes if ade_shapes[name] != citys_shapes[name]} == {
        "head.block.4.weight", "head.block.4.bias", "auxlayer.block.4.weight", "auxlayer.block.4.bias"}
    model = GLUONCV_MODELS["deeplab_resnet50_citys"]
    net, spec = convert(params, model)
    np.testing.assert_array_equal(net.head.fusion.block.classifier.weight.data().asnumpy(),
                                  zoo.head.block[4].weight.data().asnumpy())
    meta = checkpoint_meta(model, spec, params, "0" * 40, None)
    assert spec.num_classes == 19 and meta["classes"] == list(CITYSCAPES_CLASSES)
    assert meta["palette"] == [list(c) for c in CITYSCAPES_COLOURS]
    assert meta["config"]["dataset"] == "cityscapes" and meta["config"]["data_dir"] == "cityscapes"
    coco = GLUONCV_MODELS["deeplab_resnet101_coco"]
    meta = checkpoint_meta(coco, coco.spec, params, "0" * 40, None)
    assert meta["classes"] == list(VOC_CLASSES) and meta["config"]["dataset"] == "voc"
    assert meta["palette"] == voc_palette()[:21].astype(int).tolist() and meta["source"]["trained_on"] == "coco"


def test_legacy_prefixed_files_are_read_through_gluoncvs_network(ade, tmp_path):
    """Files written with gluoncv's older save_params name parameters by prefix (resnetv1s_conv0_weight)."""
    legacy = tmp_path / "legacy.params"
    ade["zoo"].collect_params().save(str(legacy), strip_prefix=ade["zoo"].prefix)  # what save_params wrote
    assert not any("." in name for name in mx.nd.load(str(legacy)))
    model = GLUONCV_MODELS["deeplab_resnet50_ade"]
    from_legacy, _ = convert(legacy, model)
    from_structural, _ = convert(ade["params"], model)
    structural = from_structural._collect_params_with_prefix()
    for name, param in from_legacy._collect_params_with_prefix().items():
        np.testing.assert_array_equal(param.data().asnumpy(), structural[name].data().asnumpy())


def test_every_published_model_builds_and_maps_every_parameter():
    assert sorted(GLUONCV_MODELS) == sorted(
        ["deeplab_resnet101_voc", "deeplab_resnet152_voc", "deeplab_resnet101_coco", "deeplab_resnet152_coco",
         "deeplab_resnet50_ade", "deeplab_resnet101_ade", "deeplab_resnet50_citys", "deeplab_resnet101_citys"])
    from deeplab_gluon.models import build_model

    net = build_model(GLUONCV_MODELS["deeplab_resnet152_voc"].spec, initialize=False)
    names = [gluoncv_name(name) for name in net._collect_params_with_prefix()]
    assert None not in names and len(set(names)) == len(names)
    assert "layer3.35.conv2.weight" in names and "head.aspp.concurent.4.gap.1.weight" in names


def test_evaluate_predict_and_export_take_the_converted_checkpoint_as_it_is(ade, tmp_path, capsys):
    from deeplab_gluon import evaluate, export, predict

    checkpoint = ade["checkpoint"]
    report = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(checkpoint), "--output", str(report), "--progress", "0"]) == 0
    scores = json.loads(report.read_text())
    assert scores["dataset"] == "ade20k" and scores["num_images"] == 1 and scores["classes"] == list(ADE20K_CLASSES)

    images = ade["data_dir"] / "images" / "validation"
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(images), "--output_dir",
                         str(tmp_path / "pred"), "--progress", "0"]) == 0
    with Image.open(tmp_path / "pred" / "ADE_val_00000001.png") as mask:
        assert mask.mode == "P" and mask.getpalette()[:6] == [*ADE20K_COLOURS[0], *ADE20K_COLOURS[1]]

    out = tmp_path / "export"
    assert export.main(["--checkpoint", str(checkpoint), "--output_dir", str(out), "--input_size", "48", "40"]) == 0
    printed = capsys.readouterr().out
    assert "check symbol" in printed and "check onnx" in printed
    prefix = "deeplabv3_resnet50_v1s_aspp_gluoncv_os8"
    assert {p.name for p in out.iterdir()} >= {f"{prefix}-symbol.json", f"{prefix}-0000.params", f"{prefix}.onnx"}


def test_train_fine_tunes_from_the_converted_checkpoint(ade, tmp_path):
    data = tmp_path / "toy"
    make_toy_dataset(data, num_train=4, num_val=2, image_size=(40, 40), seed=0)
    flags = train_flags(data, tmp_path / "run", max_iter=2, base_architecture="resnet50_v1s", output_stride=8,
                        batch_size=2, checkpoint_every=2, init_from=ade["checkpoint"], load_backbone_only=1)
    done = run_train(flags)
    assert done.returncode == 0, done.stderr
    tuned = Checkpoint.latest(tmp_path / "run" / "checkpoints")
    assert tuned.iteration == 2 and tuned.spec.num_classes == 5
    start = Checkpoint.open(ade["checkpoint"]).load()
    stem = "backbone.conv1.0.weight"
    before = start._collect_params_with_prefix()[stem].data().asnumpy()
    after = tuned.load()._collect_params_with_prefix()[stem].data().asnumpy()
    # two small SGD steps from the converted weights, not a fresh initialisation
    assert 0 < np.abs(after - before).max() < 0.01 * np.abs(before).max()


def test_train_flags_name_the_converted_network_so_all_its_weights_load(ade):
    """The COCO -> VOC recipe: --init_from without --load_backbone_only needs the same network."""
    from deeplab_gluon.models import build_model
    from deeplab_gluon.train import parse_config

    saved = Checkpoint.open(ade["checkpoint"])
    config = parse_config(["--base_architecture", "resnet50_v1s", "--output_stride", "8", "--aux", "1",
                           "--head_variant", "gluoncv", "--dilation_rule", "gluoncv", "--num_classes", "150"])
    spec = ModelSpec.from_config(config)
    assert spec == saved.spec
    net = build_model(spec, initialize=False)
    saved.load_into(net, expect=spec)  # refuses a network whose weights differ
    classifier = net.head.fusion.block.classifier.weight.data().asnumpy()
    np.testing.assert_array_equal(classifier, ade["zoo"].head.block[4].weight.data().asnumpy())


@pytest.mark.parametrize("model, message", [
    ("deeplab_resnet101_voc", "is not a deeplab_resnet101_voc parameter file: 255 missing (e.g. layer3.10.bn1.beta, "
                              "layer3.10.bn1.gamma, layer3.10.bn1.running_mean), 4 of another shape "
                              "(e.g. auxlayer.block.4.bias: (150,), expected (21,)); it looks like deeplab_resnet50_ade"),
    ("deeplab_resnet50_citys", "is not a deeplab_resnet50_citys parameter file: 4 of another shape "
                               "(e.g. auxlayer.block.4.bias: (150,), expected (19,)); it looks like deeplab_resnet50_ade"),
])
def test_a_file_of_another_model_is_one_line(ade, tmp_path, capsys, model, message):
    code = convert_gluoncv.main(["--model", model, "--params", str(ade["params"]), "--output",
                                 str(tmp_path / "x.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("convert_gluoncv: error: ")
    assert message in err
    assert not (tmp_path / "x.ckpt").exists()


def test_a_published_file_of_another_model_is_named(ade, tmp_path, capsys, monkeypatch):
    """voc and coco files have the same structure; the published file's sha1 tells them apart."""
    sha1 = file_digest(ade["params"], "sha1")
    coco = GLUONCV_MODELS["deeplab_resnet101_coco"]
    monkeypatch.setitem(GLUONCV_MODELS, coco.name, type(coco)(coco.name, coco.depth, coco.trained_on, sha1))
    code = convert_gluoncv.main(["--model", "deeplab_resnet50_ade", "--params", str(ade["params"]),
                                 "--output", str(tmp_path / "x.ckpt")])
    assert code == 2
    assert capsys.readouterr().err == (f"convert_gluoncv: error: {ade['params']} is gluoncv's published "
                                       f"deeplab_resnet101_coco file, not deeplab_resnet50_ade; "
                                       f"pass --model deeplab_resnet101_coco\n")


def test_unreadable_and_missing_files_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.params"
    junk.write_bytes(b"not parameters")
    for params, message in [(junk, "is not a parameter file: Invalid NDArray file format"), (tmp_path / "absent.params", "is not a file")]:
        code = convert_gluoncv.main(["--model", "deeplab_resnet50_ade", "--params", str(params), "--output",
                                     str(tmp_path / "x.ckpt")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err
