"""Every backbone family x head x decoder x output stride: forward and backward at odd sizes after hybridize."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from deeplab_gluon.models import ModelSpec, get_deeplab

# the smallest variant of each family
BACKBONES = ["resnet18_v2", "resnet18_v1b", "mobilenetv2_1.0", "xception65"]
SIZES = [(37, 29), (18, 45)]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", ["aspp", "vortex"])
@pytest.mark.parametrize("decoder", [False, True], ids=["v3", "v3plus"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_forward_and_backward_at_odd_sizes_after_hybridize(backbone, head, decoder, output_stride):
    net = get_deeplab(backbone, head, output_stride, num_classes=3, aux=True, decoder=decoder, initialize=False)
    # the builder's He initialisation draws Gaussians: 3-4.5 s for Xception-65 + head's 56M weights here,
    # uniform draws of the same scale 1.2 s, and they serve this test as well
    net.initialize(mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=2))
    net.hybridize()
    for index, (height, width) in enumerate(SIZES):
        x = mx.nd.random.uniform(shape=(2, 3, height, width))
        weights = mx.nd.random.normal(shape=(2, 3, height, width))
        with autograd.record():
            logits, aux_logits = net(x)
            loss = (logits * weights).sum() + (aux_logits * weights).sum()
        loss.backward()
        assert logits.shape == aux_logits.shape == (2, 3, height, width)
        assert np.isfinite(logits.asnumpy()).all()
        if index == 0:  # every parameter learns: the decoder takes its input, the head gives it features
            dead = [name for name, p in net.collect_params().items()
                    if p.grad_req != "null" and float(p.grad().abs().sum().asscalar()) == 0.0]
            assert dead == []


def test_decoder_head_gives_features_and_keeps_the_non_decoder_names():
    """Old checkpoints (no decoder) keep their parameter names; with a decoder the head has no classifier."""
    plain = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, initialize=False)
    plus = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, decoder=True, initialize=False)
    plain_names = set(plain._collect_params_with_prefix())
    plus_names = set(plus._collect_params_with_prefix())
    assert {"head.fusion.classifier.weight", "head.fusion.classifier.bias"} <= plain_names
    assert not any(name.startswith("decoder.") for name in plain_names)
    assert plain_names - plus_names == {"head.fusion.classifier.weight", "head.fusion.classifier.bias"}
    assert {name for name in plus_names - plain_names} == {
        name for name in plus_names if name.startswith("decoder.")}
    assert "decoder.classifier.weight" in plus_names


def test_spec_decoder_field_names_and_old_descriptions():
    assert ModelSpec.from_dict({"backbone": "resnet_v2_50", "head": "vortex", "num_classes": 21,
                                "output_stride": 16, "aux": False}).decoder is False  # written before the field
    spec = ModelSpec(backbone="xception", head="vortex", decoder=True)
    assert spec.name == "deeplabv3plus_xception65_vortex"
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.weight_differences(spec.replace(decoder=False)) == [
        "decoder: checkpoint has True, this run has False"]


def test_mobilenet_refuses_multi_grid_through_the_spec():
    with pytest.raises(ValueError, match="no multi-grid"):
        get_deeplab("mobilenetv2_1.0", multi_grid=(1, 2, 4), initialize=False)
