"""The assembled DeepLabV3: any input size, parameter counts derived by hand, gradient flow."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from deeplab_gluon.models import ModelSpec, get_deeplab, get_model, list_models
from deeplab_gluon.models.backbones import canonical_backbone


def _param_count(net):
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values())


@pytest.mark.parametrize("head", ["aspp", "vortex"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_any_input_size_after_hybridize(head, output_stride):
    net = get_deeplab("resnet18_v2", head, output_stride, num_classes=4)
    net.hybridize(static_alloc=True)
    # one graph for every size: VOC-like 500x375, the crop size, odd/even mixes, tiny
    for height, width in [(375, 500), (513, 513), (321, 481), (64, 63), (17, 30)]:
        out = net(mx.nd.random.uniform(shape=(1, 3, height, width)))
        assert out.shape == (1, 4, height, width)
        assert np.isfinite(out.asnumpy()).all()


def test_gluoncv_variant_takes_any_input_size_after_hybridize():
    """gluoncv's own network fixes its pooling branch and output to the crop size; this one does not."""
    net = get_deeplab("resnet50_v1s", "aspp", 8, num_classes=4, aux=True, head_variant="gluoncv",
                      dilation_rule="gluoncv")
    net.hybridize(static_alloc=True)
    for height, width in [(321, 481), (64, 63), (17, 30)]:
        logits, aux_logits = net(mx.nd.random.uniform(shape=(1, 3, height, width)))
        assert logits.shape == aux_logits.shape == (1, 4, height, width)


def test_head_variant_and_dilation_rule_are_checked_by_the_spec():
    spec = ModelSpec("resnet101_v1s", head_variant="GluonCV", dilation_rule="gluoncv", output_stride=8, aux=True)
    assert spec.head_variant == "gluoncv" and spec.name == "deeplabv3_resnet101_v1s_aspp_gluoncv"
    assert "head_variant" in spec.weight_differences(spec.replace(head_variant="deeplab"))[0]
    assert spec.weight_differences(spec.replace(dilation_rule="uniform")) == []  # it moves no weight
    with pytest.raises(ValueError, match="head_variant must be one of deeplab, gluoncv"):
        ModelSpec(head_variant="torchvision")
    with pytest.raises(ValueError, match="xception65 dilates uniformly only"):
        ModelSpec("xception65", dilation_rule="gluoncv")
    with pytest.raises(ValueError, match="dilation_rule must be one of uniform, gluoncv"):
        ModelSpec("resnet50_v1s", dilation_rule="tf")


def test_batch_and_aux_output_shapes():
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, aux=True)
    net.hybridize()
    logits, aux_logits = net(mx.nd.random.uniform(shape=(3, 3, 50, 70)))
    assert logits.shape == aux_logits.shape == (3, 3, 50, 70)


def _bn(channels):
    return 4 * channels  # gamma, beta, running mean, running var


def _bottleneck(in_channels, out_channels, downsample):
    mid = out_channels // 4
    return (_bn(in_channels) + in_channels * mid            # bn1, conv1 1x1
            + _bn(mid) + 9 * mid * mid                      # bn2, conv2 3x3
            + _bn(mid) + mid * out_channels                 # bn3, conv3 1x1
            + (in_channels * out_channels if downsample else 0))


def _resnet101_v2_params():
    count = _bn(3) + 7 * 7 * 3 * 64 + _bn(64)              # data BN, stem conv, stem BN
    in_channels = 64
    for blocks, out_channels in [(3, 256), (4, 512), (23, 1024), (3, 2048)]:
        count += _bottleneck(in_channels, out_channels, downsample=True)
        count += (blocks - 1) * _bottleneck(out_channels, out_channels, downsample=False)
        in_channels = out_channels
    return count + _bn(2048)                                 # final BN of ResNet-v2


def _aspp_params(in_channels, num_classes, width=256):
    conv1x1 = in_channels * width + _bn(width)
    atrous = 3 * (9 * in_channels * width + _bn(width))
    image_pool = in_channels * width + _bn(width)
    fusion = 5 * width * width + _bn(width) + width * num_classes + num_classes
    return conv1x1 + atrous + image_pool + fusion


def test_resnet101_aspp_parameter_count_matches_hand_arithmetic():
    net = get_deeplab("resnet101_v2", "aspp", 16, num_classes=21, initialize=False)
    backbone = _resnet101_v2_params()
    head = _aspp_params(2048, 21)
    assert backbone == 42_590_412   # = the zoo's resnet101_v2 (44,639,412) minus its 2048x1000+1000 classifier
    assert head == 15_543_573
    assert _param_count(net.backbone) == backbone
    assert _param_count(net.head) == head
    assert _param_count(net) == backbone + head


def test_vortex_head_has_the_same_parameters_as_aspp():
    """Vortex swaps each atrous conv's input for an average-pooled one: pooling has no weights,
    and the branches (1x1, three 3x3 atrous, image pooling, 5x256 fusion) are the same."""
    aspp = get_deeplab("resnet101_v2", "aspp", 16, num_classes=21, initialize=False)
    vortex = get_deeplab("resnet101_v2", "vortex", 16, num_classes=21, initialize=False)
    assert _param_count(vortex.head) - _param_count(aspp.head) == 0
    assert _param_count(vortex.head) == _aspp_params(2048, 21)


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_gradients_reach_every_parameter(head):
    net = get_deeplab("resnet18_v2", head, 8, num_classes=3, aux=True, multi_grid=(1, 2))
    net.hybridize()
    x = mx.nd.random.uniform(shape=(2, 3, 48, 40))
    weights = mx.nd.random.normal(shape=(2, 3, 48, 40))
    with autograd.record():
        logits, aux_logits = net(x)
        loss = (logits * weights).sum() + (aux_logits * weights).sum()
    loss.backward()
    trainable = {name: p for name, p in net.collect_params().items() if p.grad_req != "null"}
    assert len(trainable) > 60
    dead = [name for name, p in trainable.items() if float(p.grad().abs().sum().asscalar()) == 0.0]
    assert dead == []


def test_freeze_bn_stops_affine_learning_and_uses_stored_statistics():
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, freeze_bn=True, dropout=0)
    bn_params = [p for name, p in net.collect_params().items() if name.endswith(("gamma", "beta"))]
    assert bn_params and all(p.grad_req == "null" for p in bn_params)
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    with autograd.record():  # training mode: frozen BN still uses the stored statistics
        training_out = net(x)
    np.testing.assert_allclose(training_out.asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, depth", [("resnet50_v2", 50), ("resnet_v2_101", 101), ("101", 101),
                                         ("ResNet18_v2", 18), ("resnet152", 152)])
def test_backbone_names_accept_both_spellings(name, depth):
    assert canonical_backbone(name) == f"resnet{depth}_v2"
    assert ModelSpec(backbone=name).backbone == f"resnet{depth}_v2"  # the spec stores one spelling


@pytest.mark.parametrize("name", ["resnet51_v2", "vgg16", "", "resnet_v1_50"])
def test_unknown_backbones_are_refused(name):
    with pytest.raises(ValueError, match="unknown backbone"):
        canonical_backbone(name)


def test_registry_names_build_the_right_model():
    assert "deeplabv3_resnet101_v2_aspp" in list_models()
    # 5 ResNet-v2 depths x (aspp, aspp_sep, vortex, vortex_sep, lite): the lite head has no 3x3 conv to separate
    assert len([name for name in list_models() if name.startswith("deeplabv3_") and "_v2_" in name]) == 25
    # 15 backbones x (5 DeepLabV3 + 6 DeepLabV3+: lite_sep too), gluoncv's spelling
    assert len(list_models()) == 165 and "deeplabv3plus_xception65_vortex" in list_models()
    net = get_model("deeplabv3_resnet18_v2_vortex", num_classes=2, initialize=False)
    assert type(net.head).__name__ == "VortexHead" and net.backbone.depth == 18 and net.decoder is None
    plus = get_model("deeplabv3plus_mobilenetv2_1.0_aspp", num_classes=2, initialize=False)
    assert type(plus.backbone).__name__ == "DilatedMobileNetV2" and type(plus.decoder).__name__ == "Decoder"
    with pytest.raises(ValueError, match="unknown model"):
        get_model("deeplabv3_vgg16")


def test_pretrained_base_is_loaded_into_the_backbone(tmp_path):
    from mxnet.gluon.model_zoo import vision
    zoo = vision.get_model("resnet18_v2")
    zoo.initialize(mx.init.Uniform(0.5))
    zoo(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / "resnet18_v2-test.params")
    zoo.save_parameters(path)
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, pretrained_base=path)
    np.testing.assert_array_equal(net.backbone.features[1].weight.data().asnumpy(),
                                  zoo.features[1].weight.data().asnumpy())
