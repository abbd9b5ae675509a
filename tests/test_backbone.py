"""Dilated ResNet-v2 backbone: strides, dilations and model-zoo weight compatibility."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.model_zoo import vision
from zoo_weights import randomised

from deeplab_gluon.models.backbones.resnet_v2 import DilatedResNetV2, stage_strides_and_dilations


def _zoo_with_random_weights(depth):
    """A zoo resnet<depth>_v2 whose every parameter, BN statistics included, is random."""
    return randomised(vision.get_model(f"resnet{depth}_v2"), depth)


def _zoo_features(zoo, x):
    """The zoo's features up to the final BN + ReLU (before global pooling)."""
    for layer in list(zoo.features)[:11]:
        x = layer(x)
    return x


@pytest.mark.parametrize("output_stride, strides, dilations", [
    (32, (1, 2, 2, 2), (1, 1, 1, 1)),
    (16, (1, 2, 2, 1), (1, 1, 1, 2)),
    (8, (1, 2, 1, 1), (1, 1, 2, 4)),
])
def test_stage_strides_and_dilations(output_stride, strides, dilations):
    assert stage_strides_and_dilations(output_stride) == (strides, dilations)


def test_bad_output_stride_is_refused():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        DilatedResNetV2(50, output_stride=4)


def test_multi_grid_multiplies_last_stage_dilation():
    net = DilatedResNetV2(50, output_stride=16, multi_grid=(1, 2, 4))
    rates = [block.conv2._kwargs["dilate"][0] for block in net.features[8]]
    assert rates == [2, 4, 8]  # the paper's 2 * (1, 2, 4)
    net8 = DilatedResNetV2(50, output_stride=8, multi_grid=(1, 2, 4))
    assert [block.conv2._kwargs["dilate"][0] for block in net8.features[8]] == [4, 8, 16]
    assert {block.conv2._kwargs["dilate"][0] for block in net8.features[7]} == {2}


@pytest.mark.parametrize("depth", [18, 50])
def test_zoo_weights_load_and_match_at_os32(tmp_path, depth):
    zoo = _zoo_with_random_weights(depth)
    path = str(tmp_path / f"resnet{depth}_v2.params")
    zoo.save_parameters(path)

    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (2, 3, 64, 80)))
    expected = _zoo_features(zoo, x).asnumpy()

    features = {}
    for output_stride in (32, 16, 8):
        backbone = DilatedResNetV2(depth, output_stride=output_stride)
        backbone.load_pretrained(path)  # raises on any missing/unexpected parameter
        features[output_stride] = backbone(x)[2].asnumpy()

    assert features[32].shape == expected.shape == (2, backbone.out_channels, 2, 3)
    np.testing.assert_allclose(features[32], expected, rtol=1e-4, atol=1e-4)
    assert features[16].shape[2:] == (4, 5)   # 2x the OS32 size: ceil(64/16), ceil(80/16)
    assert features[8].shape[2:] == (8, 10)   # 4x


def test_legacy_prefix_named_zoo_file_loads(tmp_path):
    """Old zoo files were written by save_params with prefixed names; they load too."""
    zoo = _zoo_with_random_weights(18)
    path = str(tmp_path / "legacy.params")
    zoo.collect_params().save(path, strip_prefix=zoo.prefix)
    assert not any("." in name for name in mx.nd.load(path))
    backbone = DilatedResNetV2(18, output_stride=32)
    backbone.load_pretrained(path)
    x = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    np.testing.assert_allclose(backbone(x)[2].asnumpy(), _zoo_features(zoo, x).asnumpy(), rtol=1e-4, atol=1e-4)


def test_wrong_depth_file_is_refused_with_names(tmp_path):
    zoo = _zoo_with_random_weights(18)
    path = str(tmp_path / "resnet18_v2.params")
    zoo.save_parameters(path)
    with pytest.raises(ValueError, match=r"resnet18_v2.params is a resnet18_v2 parameter file, not resnet34_v2: "
                                         r"\d+ missing \(e.g. \['features.5.2."):
        DilatedResNetV2(34).load_pretrained(path)
    # a file of no known depth still names what is missing
    partial = {k: v for k, v in mx.nd.load(path).items() if not k.startswith("features.8.")}
    mx.nd.save(str(tmp_path / "partial.params"), partial)
    with pytest.raises(ValueError, match=r"not a resnet18_v2 parameter file: \d+ missing \(e.g. \['features.8.0"):
        DilatedResNetV2(18).load_pretrained(str(tmp_path / "partial.params"))


def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "broken.params"
    path.write_bytes(b"not an ndarray file")
    with pytest.raises(ValueError, match="broken.params is not a parameter file: Invalid NDArray file format$"):
        DilatedResNetV2(18).load_pretrained(str(path))


def test_forward_gives_low_level_stage3_and_features():
    backbone = DilatedResNetV2(18, output_stride=8)
    backbone.initialize()
    low_level, stage3, features = backbone(mx.nd.random.uniform(shape=(1, 3, 33, 47)))
    assert low_level.shape == (1, backbone.low_level_channels, 9, 12)   # stride 4: ceil(33/4), ceil(47/4)
    assert stage3.shape == (1, backbone.stage3_channels, 5, 6)          # stride 8 at OS8
    assert features.shape == (1, backbone.out_channels, 5, 6)
