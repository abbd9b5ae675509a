"""Separable head / decoder convs and the lite head (issue 27): structure, multiply-adds against a hand count,
odd input sizes after hybridize, names, the train flag, checkpoint round trip, int8 / bf16 agreement with fp32."""
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from deeplab_gluon.checkpoint import Checkpoint, CheckpointError
from deeplab_gluon.models import ModelSpec, build_model, get_deeplab, get_model, list_models
from deeplab_gluon.models.heads import SeparableConvBNReLU
from deeplab_gluon.precision import cpu_has_bf16, optimize_for_inference
from deeplab_gluon.train import parse_config
from tiny_model import trained_tiny_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # noqa: E402  (benchmarks/common.py: the multiply-add counter)

SIZES = [(37, 29), (18, 45)]


def _uniform_init(net):
    # uniform draws of He scale: faster than the builder's Gaussians, as in test_model_combinations
    net.initialize(mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=2))
    net.hybridize()
    return net


@pytest.mark.parametrize("backbone,head,decoder", [
    ("resnet18_v2", "aspp", False), ("resnet18_v2", "vortex", False), ("resnet18_v2", "aspp", True),
    ("resnet18_v2", "vortex", True), ("mobilenetv2_1.0", "lite", False), ("mobilenetv2_1.0", "lite", True)])
def test_separable_and_lite_models_run_forward_and_backward_at_odd_sizes(backbone, head, decoder):
    net = _uniform_init(get_deeplab(backbone, head, 16, num_classes=3, decoder=decoder, separable=True,
                                    initialize=False))
    for index, (height, width) in enumerate(SIZES):
        x = mx.nd.random.uniform(shape=(2, 3, height, width))
        weights = mx.nd.random.normal(shape=(2, 3, height, width))
        with autograd.record():
            logits = net(x)
            loss = (logits * weights).sum()
        loss.backward()
        assert logits.shape == (2, 3, height, width) and np.isfinite(logits.asnumpy()).all()
        if index == 0:  # every parameter learns: the depthwise and pointwise convs are on the path
            dead = [name for name, p in net.collect_params().items()
                    if p.grad_req != "null" and float(p.grad().abs().sum().asscalar()) == 0.0]
            assert dead == []


def test_separable_replaces_each_atrous_and_decoder_3x3_by_depthwise_plus_pointwise():
    aspp = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, separable=True, decoder=True, initialize=False)
    atrous = list(aspp.head.branches)[1:4]
    assert all(isinstance(branch, SeparableConvBNReLU) for branch in atrous)
    assert [b.depthwise._kwargs["dilate"] for b in atrous] == [(6, 6), (12, 12), (18, 18)]
    assert all(b.depthwise._kwargs["num_group"] == 512 for b in atrous)
    assert all(isinstance(conv, SeparableConvBNReLU) for conv in aspp.decoder.fuse)
    vortex = get_deeplab("resnet18_v2", "vortex", 8, num_classes=3, separable=True, initialize=False)
    assert [b.depthwise._kwargs["dilate"] for b in vortex.head.atrous] == [(6, 6), (18, 18), (54, 54)]
    dense = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, decoder=True, initialize=False)
    assert not any(isinstance(b, SeparableConvBNReLU) for b in list(dense.head.branches) + list(dense.decoder.fuse))
    lite = get_model("deeplabv3_mobilenetv2_1.0_lite", num_classes=3, initialize=False)
    assert len(lite.head.branches) == 2 and lite.head.rates == ()  # 1x1 + image pooling: 512 channels fused
    assert lite.head.fusion.project.conv._kwargs["kernel"] == (1, 1)
    assert lite.head.fusion.project.conv._in_channels == 512


def test_multiply_adds_of_one_separable_layer_equal_the_hand_count():
    layer = SeparableConvBNReLU(8, 16, dilation=2)
    layer.initialize()
    # depthwise: 3x3 taps per output value, 8 channels; pointwise: 8 inputs per output value, 16 channels
    assert common.count_macs(layer, (1, 8, 11, 13))["total"] == 11 * 13 * (9 * 8 + 8 * 16)


def test_separable_aspp_saves_what_the_hand_count_says():
    macs = {separable: common.count_macs(get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, separable=separable,
                                                     initialize=False), (1, 3, 65, 65))["total"]
            for separable in (False, True)}
    positions = 5 * 5  # 65 -> stride 16 features of ceil(65 / 16) = 5
    dense_branch, separable_branch = 9 * 512 * 256, 9 * 512 + 512 * 256
    assert macs[False] - macs[True] == 3 * positions * (dense_branch - separable_branch)


def test_names_registry_and_old_descriptions():
    names = list_models()
    for name in ["deeplabv3_resnet18_v2_aspp_sep", "deeplabv3plus_resnet50_v2_vortex_sep",
                 "deeplabv3_mobilenetv2_1.0_lite", "deeplabv3plus_mobilenetv2_1.0_lite_sep",
                 "deeplabv3_resnet101_v2_aspp"]:
        assert name in names
    assert "deeplabv3_mobilenetv2_1.0_lite_sep" not in names  # no 3x3 conv to make separable
    spec = ModelSpec("mobilenetv2_1.0", "lite", 21, decoder=True, separable=True)
    assert spec.name == "deeplabv3plus_mobilenetv2_1.0_lite_sep"
    assert ModelSpec("resnet18_v2", "aspp", 21, head_variant="gluoncv", separable=True).name == \
        "deeplabv3_resnet18_v2_aspp_gluoncv_sep"
    net = get_model("deeplabv3plus_mobilenetv2_1.0_lite_sep", num_classes=4, initialize=False)
    assert isinstance(list(net.decoder.fuse)[0], SeparableConvBNReLU)
    # a checkpoint written before the field existed builds the dense network
    old = {"backbone": "resnet18_v2", "head": "aspp", "num_classes": 21, "decoder": True}
    assert ModelSpec.from_dict(old).separable is False
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert "separable: checkpoint has False, this run has True" in " ".join(
        ModelSpec.from_dict(old).weight_differences(ModelSpec.from_dict(dict(old, separable=True))))


def test_train_flags_select_the_lite_head_and_separable_convs():
    config = parse_config(["--base_architecture", "mobilenetv2_1.0", "--aspp_or_vortex", "3", "--separable", "1",
                           "--decoder", "1"])
    assert ModelSpec.from_config(config, num_classes=21).name == "deeplabv3plus_mobilenetv2_1.0_lite_sep"
    assert ModelSpec.from_config(parse_config([]), num_classes=21).separable is False


def test_checkpoint_round_trip_of_a_separable_lite_model(tmp_path):
    spec = ModelSpec("mobilenetv2_1.0", "lite", 4, decoder=True, separable=True)
    mx.random.seed(3)
    net = build_model(spec)
    net.hybridize()
    x = mx.nd.random.uniform(shape=(1, 3, 41, 35))
    expected = net(x).asnumpy()
    path = Checkpoint.write(tmp_path / "iter-0000001.ckpt", net, None, {"iteration": 1, "model": spec.to_dict()}).path
    saved = Checkpoint.open(path)
    assert saved.spec == spec
    np.testing.assert_allclose(saved.load()(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    dense = build_model(spec.replace(separable=False), initialize=False)
    with pytest.raises(CheckpointError, match="separable"):
        saved.load_into(dense, expect=spec.replace(separable=False))


@pytest.fixture(scope="module", params=[dict(backbone="mobilenetv2_1.0", head="lite", decoder=True, separable=True),
                                        dict(backbone="resnet18_v2", head="vortex", separable=True)],
                ids=["lite_v3plus_sep", "resnet18_vortex_sep"])
def trained(request):
    net, images, _ = trained_tiny_net(**request.param)
    return net, images, net(images).argmax(axis=1).asnumpy()


def test_int8_of_separable_and_lite_models_agrees_with_fp32(trained):
    net, images, reference = trained
    int8 = optimize_for_inference(net, "int8", calibration_batches=images[:8])
    assert int8.precision == "int8"
    assert float((int8(images).argmax(axis=1).asnumpy() == reference).mean()) >= 0.95
    assert int8(mx.nd.random.normal(shape=(1, 3, 45, 37))).shape == (1, 5, 45, 37)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")
def test_bf16_of_separable_and_lite_models_agrees_with_fp32(trained):
    net, images, reference = trained
    bf16 = optimize_for_inference(net, "bf16")
    assert bf16.precision == "bf16"
    assert float((bf16(images).argmax(axis=1).asnumpy() == reference).mean()) >= 0.95
