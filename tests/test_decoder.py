"""The DeepLabV3+ decoder: stride-4 logits at any size after hybridize, parameters as the paper, gradients."""
import mxnet as mx
import numpy as np
from mxnet import autograd

from deeplab_gluon.models.decoder import Decoder


def _param_count(block):
    return sum(int(np.prod(p.shape)) for p in block.collect_params().values())


def test_logits_at_low_level_size_for_odd_sizes_after_hybridize():
    decoder = Decoder(low_level_channels=24, num_classes=5)
    decoder.initialize(mx.init.Xavier())
    decoder.hybridize(static_alloc=True)
    # head features at stride 16 and the stride-4 map of a 129 x 95 and a 33 x 47 image: one graph for both
    for head_size, low_size in [((9, 6), (33, 24)), ((3, 3), (9, 12))]:
        head_features = mx.nd.random.uniform(shape=(2, 256) + head_size)
        low_level = mx.nd.random.uniform(shape=(2, 24) + low_size)
        logits = decoder(head_features, low_level)
        assert logits.shape == (2, 5) + low_size
        assert np.isfinite(logits.asnumpy()).all()


def test_parameters_are_the_papers():
    """1x1 to 48 + BN; 3x3 (256 + 48 -> 256) + BN; 3x3 (256 -> 256) + BN; 1x1 classifier with bias."""
    bn = 4  # gamma, beta, running mean, running var per channel
    expected = (128 * 48 + bn * 48) + (9 * 304 * 256 + bn * 256) + (9 * 256 * 256 + bn * 256) + (256 * 21 + 21)
    assert _param_count(Decoder(128, 21)) == expected


def test_classifier_starts_small():
    decoder = Decoder(24, 3)
    decoder.initialize(mx.init.Xavier())
    assert float(decoder.classifier.weight.data().asnumpy().std()) < 0.02


def test_forward_and_backward_reach_every_parameter_and_both_inputs():
    decoder = Decoder(low_level_channels=16, num_classes=3)
    decoder.initialize(mx.init.Xavier())
    decoder.hybridize()
    head_features = mx.nd.random.uniform(shape=(2, 256, 4, 3))
    low_level = mx.nd.random.uniform(shape=(2, 16, 13, 11))
    head_features.attach_grad()
    low_level.attach_grad()
    weights = mx.nd.random.normal(shape=(2, 3, 13, 11))
    with autograd.record():
        loss = (decoder(head_features, low_level) * weights).sum()
    loss.backward()
    dead = [name for name, p in decoder.collect_params().items()
            if p.grad_req != "null" and float(p.grad().abs().sum().asscalar()) == 0.0]
    assert dead == []
    assert float(head_features.grad.abs().sum().asscalar()) > 0
    assert float(low_level.grad.abs().sum().asscalar()) > 0
