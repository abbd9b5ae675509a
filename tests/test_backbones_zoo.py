"""ResNet-v1b/v1s, MobileNetV2 and Xception-65 backbones: zoo weights load exactly and give the zoo's features.

Every zoo network is built here with random weights (BN statistics included), saved with
``save_parameters`` and loaded into the backbone; nothing is downloaded.
"""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model as gluoncv_model
from gluoncv.model_zoo.xception import Xception65 as GluonCVXception65
from mxnet.gluon.model_zoo import vision

from deeplab_gluon.models.backbones.base import guess_zoo_model
from deeplab_gluon.models.backbones.mobilenet_v2 import DilatedMobileNetV2, block_strides_and_dilations
from deeplab_gluon.models.backbones.resnet_v1b import DilatedResNetV1b
from deeplab_gluon.models.backbones.xception import Xception65
from zoo_weights import randomised as _randomised


TOL = dict(rtol=1e-4, atol=1e-4)


def _saved(zoo, tmp_path, name):
    path = str(tmp_path / f"{name}.params")
    zoo.save_parameters(path)
    return path


def _image(height=65, width=47, batch=2):
    return mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (batch, 3, height, width)))


def _close(actual, expected):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.asnumpy(), expected.asnumpy(), **TOL)


def _resnet_v1b_zoo_features(zoo, x):
    """gluoncv ResNetV1b's (layer1, layer3, layer4) outputs."""
    x = zoo.maxpool(zoo.relu(zoo.bn1(zoo.conv1(x))))
    layer1 = zoo.layer1(x)
    layer3 = zoo.layer3(zoo.layer2(layer1))
    return layer1, layer3, zoo.layer4(layer3)


def _xception_zoo_features(zoo, x):
    """gluoncv Xception65's (block1 + ReLU, middle flow, exit flow) outputs, as its DeepLabV3+ takes them."""
    x = zoo.relu(zoo.bn1(zoo.conv1(x)))
    x = zoo.relu(zoo.bn2(zoo.conv2(x)))
    low_level = zoo.relu(zoo.block1(x))
    middle = zoo.midflow(zoo.block3(zoo.block2(low_level)))
    x = zoo.relu(zoo.block20(middle))
    for conv, bn in ((zoo.conv3, zoo.bn3), (zoo.conv4, zoo.bn4), (zoo.conv5, zoo.bn5)):
        x = zoo.relu(bn(conv(x)))
    return low_level, middle, x


# --- ResNet-v1b / v1s -------------------------------------------------------------------------

@pytest.mark.parametrize("name, depth, variant", [("resnet18_v1b", 18, "v1b"), ("resnet50_v1s", 50, "v1s")])
def test_resnet_v1b_zoo_weights_load_and_match_at_os32(tmp_path, name, depth, variant):
    zoo = _randomised(gluoncv_model(name), depth)
    path = _saved(zoo, tmp_path, name)
    x = _image()
    expected = _resnet_v1b_zoo_features(zoo, x)

    outputs = {}
    for output_stride in (32, 16, 8):
        backbone = DilatedResNetV1b(depth, variant, output_stride=output_stride)
        backbone.load_pretrained(path)  # raises on anything missing or unexpected but fc
        outputs[output_stride] = backbone(x)

    for actual, wanted in zip(outputs[32], expected):  # low_level, stage3, features
        _close(actual, wanted)
    assert outputs[32][2].shape == (2, backbone.out_channels, 3, 2)   # ceil(65/32), ceil(47/32)
    assert outputs[16][2].shape[2:] == (5, 3)                         # 2x (rounded up)
    assert outputs[8][2].shape[2:] == (9, 6)                          # 4x
    _close(outputs[8][0], expected[0])  # stride-4 features are never dilated

    # gluoncv's DeepLab backbone (dilated=True: OS8, a dilated stage's first block at half rate), same file
    dilated_zoo = gluoncv_model(name, dilated=True)
    dilated_zoo.load_parameters(path)
    expected_os8 = _resnet_v1b_zoo_features(dilated_zoo, x)
    gluoncv_rule = DilatedResNetV1b(depth, variant, output_stride=8, dilation_rule="gluoncv")
    gluoncv_rule.load_pretrained(path)
    for actual, wanted in zip(gluoncv_rule(x), expected_os8):
        _close(actual, wanted)
    assert not np.allclose(outputs[8][2].asnumpy(), expected_os8[2].asnumpy(), **TOL)  # the rules differ


def _rates(stage):
    """The dilation of each block's first 3x3 conv (a bottleneck's conv2, a basic block's conv1)."""
    return [(block.conv2 if hasattr(block, "conv3") else block.conv1)._kwargs["dilate"][0] for block in stage]


def test_resnet_v1b_multi_grid_and_dilation_rules():
    assert _rates(DilatedResNetV1b(50, output_stride=16, multi_grid=(1, 2, 4)).layer4) == [2, 4, 8]
    assert _rates(DilatedResNetV1b(50, output_stride=16, multi_grid=(1, 2, 4), dilation_rule="gluoncv").layer4) \
        == [1, 4, 8]
    os8 = DilatedResNetV1b(50, output_stride=8, dilation_rule="gluoncv")
    assert _rates(os8.layer3) == [1] + [2] * 5 and _rates(os8.layer4) == [2, 4, 4]
    basic = DilatedResNetV1b(18, output_stride=8, dilation_rule="gluoncv").layer4[0]
    assert (basic.conv1._kwargs["dilate"][0], basic.conv2._kwargs["dilate"][0]) == (2, 4)


def _structural_shapes(net, input_shape=(1, 3, 32, 32)):
    """``{structural name: shape}`` of a network with deferred shapes, inferred without allocating weights."""
    inferred = net(mx.sym.var("data"))
    arg_shapes, _, aux_shapes = inferred.infer_shape(data=input_shape)
    by_name = dict(zip(inferred.list_arguments(), arg_shapes))
    by_name.update(zip(inferred.list_auxiliary_states(), aux_shapes))
    return {structural: by_name[param.name] for structural, param in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("name", ["resnet34_v1b", "resnet101_v1b", "resnet152_v1b", "resnet101_v1s",
                                  "resnet152_v1s"])
def test_resnet_v1b_other_depths_have_the_zoo_layout(name):
    """Every other zoo name: the same parameter names and shapes as gluoncv's network, less its fc."""
    wanted = {k: v for k, v in _structural_shapes(gluoncv_model(name)).items() if not k.startswith("fc.")}
    depth, variant = name[len("resnet"):].split("_")
    backbone = DilatedResNetV1b(int(depth), variant, output_stride=8)
    assert {k: v.shape for k, v in backbone._collect_params_with_prefix().items()} == wanted


def test_resnet_v1b_refuses_bad_arguments():
    for kwargs, message in [(dict(output_stride=4), "output_stride must be one of"),
                            (dict(depth=18, variant="v1s"), "depth must be one of"),
                            (dict(variant="v1d"), "variant must be one of"),
                            (dict(dilation_rule="tf"), "dilation_rule must be one of")]:
        with pytest.raises(ValueError, match=message):
            DilatedResNetV1b(**kwargs)


def test_legacy_prefix_named_zoo_file_loads(tmp_path):
    """Files written by the old save_params carry prefixed names; they load through gluoncv's network."""
    zoo = _randomised(gluoncv_model("resnet18_v1b"), 7)
    path = str(tmp_path / "legacy.params")
    zoo.collect_params().save(path, strip_prefix=zoo.prefix)
    assert not any("." in name for name in mx.nd.load(path))
    backbone = DilatedResNetV1b(18, output_stride=32)
    backbone.load_pretrained(path)
    x = _image(32, 32, batch=1)
    _close(backbone(x)[2], _resnet_v1b_zoo_features(zoo, x)[2])


# --- MobileNetV2 --------------------------------------------------------------------------------

def _mobilenet_zoo_features(zoo, x):
    """Outputs of the zoo's stride-4 block (features.5), 96-channel block (15) and last block (19)."""
    outputs = {}
    for index, layer in enumerate(zoo.features):
        if index == 20:  # the 1280-channel conv belongs to the classifier
            break
        x = outputs[index] = layer(x)
    return outputs[5], outputs[15], outputs[19]


@pytest.mark.parametrize("layout, zoo_network", [("gluoncv", lambda: gluoncv_model("mobilenetv2_1.0")),
                                                  ("gluon", lambda: vision.get_model("mobilenetv2_1.0"))])
def test_mobilenet_v2_zoo_weights_load_and_match_at_os32(tmp_path, layout, zoo_network):
    zoo = _randomised(zoo_network(), 3)
    path = _saved(zoo, tmp_path, f"mobilenetv2_1.0_{layout}")
    x = _image()
    expected = _mobilenet_zoo_features(zoo, x)

    outputs = {}
    for output_stride in (32, 16, 8):
        backbone = DilatedMobileNetV2(layout, output_stride=output_stride)
        backbone.load_pretrained(path)
        outputs[output_stride] = backbone(x)

    for actual, wanted in zip(outputs[32], expected):
        _close(actual, wanted)
    assert outputs[32][2].shape == (2, 320, 3, 2)
    assert outputs[16][2].shape[2:] == (5, 3)
    assert outputs[8][2].shape[2:] == (9, 6)

    spelled = {"gluon": "Gluon model zoo", "gluoncv": "gluoncv"}
    other = "gluon" if layout == "gluoncv" else "gluoncv"
    with pytest.raises(ValueError, match=rf"is a mobilenetv2_1.0 \({spelled[layout]} layout\) parameter file, "
                                         rf"not mobilenetv2_1.0 \({spelled[other]} layout\): \d+ missing"):
        DilatedMobileNetV2(other).load_pretrained(path)


def test_mobilenet_v2_output_stride_follows_tf_deeplab():
    """The block that would stride past the output stride keeps rate; the ones after it dilate."""
    strides, rates = block_strides_and_dilations(16)
    assert strides[13] == 1 and rates[13:] == [1, 2, 2, 2]
    strides, rates = block_strides_and_dilations(8)
    assert strides[6] == strides[13] == 1
    assert rates == [1] * 7 + [2] * 7 + [4] * 3
    assert block_strides_and_dilations(32) == ([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1], [1] * 17)


def test_mobilenet_v2_refuses_bad_arguments():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        DilatedMobileNetV2(output_stride=4)
    with pytest.raises(ValueError, match="no multi-grid"):
        DilatedMobileNetV2(multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="layout must be one of"):
        DilatedMobileNetV2("tf")
    DilatedMobileNetV2(multi_grid=(1,))  # unit rates are the default, accepted


# --- Xception-65 --------------------------------------------------------------------------------

def test_xception65_zoo_weights_load_and_match_at_os32(tmp_path):
    zoo = _randomised(gluoncv_model("xception"), 5)
    path = _saved(zoo, tmp_path, "xception")
    x = _image(65, 47, batch=1)
    expected = _xception_zoo_features(zoo, x)

    outputs = {}
    for output_stride in (32, 16, 8):
        backbone = Xception65(output_stride=output_stride)
        backbone.load_pretrained(path)
        outputs[output_stride] = backbone(x)

    for actual, wanted in zip(outputs[32], expected):
        _close(actual, wanted)
    assert outputs[32][2].shape == (1, 2048, 3, 2)
    assert outputs[16][2].shape[2:] == (5, 3)
    assert outputs[8][2].shape[2:] == (9, 6)

    # gluoncv's DeepLabV3+ builds Xception65(output_stride=8): same dilations, same features
    deeplab_zoo = GluonCVXception65(output_stride=8)
    deeplab_zoo.load_parameters(path)
    for actual, wanted in zip(outputs[8], _xception_zoo_features(deeplab_zoo, x)):
        _close(actual, wanted)


def test_xception65_multi_grid_multiplies_exit_flow_rates():
    net = Xception65(output_stride=16, multi_grid=(1, 2, 4))
    assert [conv.conv1._kwargs["dilate"][0] for conv in (net.conv3, net.conv4, net.conv5)] == [2, 4, 8]
    assert {block.rep[1].conv1._kwargs["dilate"][0] for block in Xception65(output_stride=8).midflow} == {2}


# --- every backbone -----------------------------------------------------------------------------

BACKBONES = {
    "resnet18_v1b": lambda **kw: DilatedResNetV1b(18, "v1b", **kw),
    "mobilenetv2_1.0": lambda **kw: DilatedMobileNetV2(**kw),
    "xception65": lambda **kw: Xception65(**kw),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("output_stride", [16, 8])
def test_contract_shapes_at_odd_sizes_after_hybridize(name, output_stride):
    backbone = BACKBONES[name](output_stride=output_stride)
    backbone.initialize(mx.init.Xavier())
    backbone.hybridize()
    assert backbone.output_stride == output_stride
    stage3_stride = min(16, output_stride)
    for height, width in [(33, 47), (50, 21)]:
        low_level, stage3, features = backbone(mx.nd.random.uniform(shape=(1, 3, height, width)))
        assert low_level.shape == (1, backbone.low_level_channels, -(-height // 4), -(-width // 4))
        assert stage3.shape == (1, backbone.stage3_channels, -(-height // stage3_stride), -(-width // stage3_stride))
        assert features.shape == (1, backbone.out_channels, -(-height // output_stride), -(-width // output_stride))


def test_wrong_file_is_refused_in_one_line_naming_what_it_looks_like(tmp_path):
    zoo = gluoncv_model("resnet18_v1b")
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 32, 32)))
    path = _saved(zoo, tmp_path, "resnet18_v1b")
    with pytest.raises(ValueError) as refused:
        DilatedResNetV1b(50, "v1s").load_pretrained(path)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is a resnet18_v1b parameter file, not resnet50_v1s: ")
    assert "missing (e.g. ['conv1.0.weight'" in message and "unexpected (e.g. ['conv1.weight'" in message
    with pytest.raises(ValueError, match=r"is a resnet18_v1b parameter file, not xception65 .*: \d+ missing"):
        Xception65().load_pretrained(path)
    # a file no zoo network matches still names what is missing
    partial = {k: v for k, v in mx.nd.load(path).items() if not k.startswith("layer4.")}
    mx.nd.save(str(tmp_path / "partial.params"), partial)
    with pytest.raises(ValueError, match=r"not a resnet18_v1b parameter file: \d+ missing \(e.g. \['layer4.0"):
        DilatedResNetV1b(18).load_pretrained(str(tmp_path / "partial.params"))
    with pytest.raises(ValueError, match=r"\d+ of another shape \(e.g. layer1.0.conv1.weight: \(64, 64, 3, 3\), "
                                         r"expected \(64, 64, 1, 1\)\)"):
        DilatedResNetV1b(50, "v1b").load_pretrained(path)


def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "broken.params"
    path.write_bytes(b"not an ndarray file")
    with pytest.raises(ValueError, match="broken.params is not a parameter file: Invalid NDArray file format$"):
        DilatedMobileNetV2().load_pretrained(str(path))


def test_guess_zoo_model_names_each_family():
    shapes = _structural_shapes
    assert guess_zoo_model(shapes(gluoncv_model("resnet50_v1d"))) == "resnet50_v1d"
    assert guess_zoo_model(shapes(gluoncv_model("resnet101_v1e"))) == "resnet101_v1e"
    assert guess_zoo_model(shapes(vision.get_model("resnet18_v2"))) == "resnet18_v2"
    assert guess_zoo_model(shapes(vision.get_model("mobilenetv2_0.5"))) == "mobilenetv2_0.5 (Gluon model zoo layout)"
    assert guess_zoo_model(shapes(gluoncv_model("mobilenetv2_1.0"))) == "mobilenetv2_1.0 (gluoncv layout)"
    assert guess_zoo_model(shapes(gluoncv_model("xception"))) == "xception65 (gluoncv 'xception')"
    assert guess_zoo_model({"something.else": (1,)}) is None
