"""Context heads: the box averages behind Vortex Pooling, and the heads' shapes and rates."""
import json

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon.models import ASPPHead, VortexHead
from deeplab_gluon.models.deeplab import head_rates
from deeplab_gluon.models.heads import JIT_SAFE_LEFT_PADDING, BoxAverage, DilatedBoxAverage


def _box_mean_reference(x, size):
    """size x size mean over the part of the window inside the map, by explicit loops."""
    n, c, h, w = x.shape
    r = size // 2
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            window = x[:, :, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            out[:, :, i, j] = window.mean(axis=(2, 3))
    return out


@pytest.mark.parametrize("size", [3, 9, 27])
def test_box_average_is_the_windowed_mean(size):
    x = np.random.RandomState(size).uniform(-1, 1, (2, 3, 13, 30)).astype(np.float32)
    got = BoxAverage(size)(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(got, _box_mean_reference(x, size), rtol=1e-5, atol=1e-6)


def _box_mean_matrix(n, size):
    """(n, n) matrix of the 1-D windowed mean that leaves out positions outside the map."""
    near = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= size // 2
    return near / near.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("size", [9, 15])  # direct horizontal pass, and the transposed one
@pytest.mark.parametrize("hybridize", [False, True])
def test_box_average_gradient_is_the_transposed_mean(hybridize, size):
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (1, 2, 13, 30)).astype(np.float32))
    seed = np.random.RandomState(2).uniform(-1, 1, (1, 2, 13, 30)).astype(np.float32)
    box = BoxAverage(size)
    if hybridize:
        box.hybridize(static_alloc=True)
    x.attach_grad()
    with mx.autograd.record():
        out = box(x)
    out.backward(mx.nd.array(seed))
    rows, cols = _box_mean_matrix(13, size), _box_mean_matrix(30, size)
    expected = np.einsum("ih,nchw,wj->ncij", rows.T, seed, cols)  # y = R x C^T, so dx = R^T dy C
    np.testing.assert_allclose(x.grad.asnumpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, kernels", [(13, ["(13, 1)", "(1, 13)"]), (15, ["(15, 1)", "(15, 1)"]),
                                           (55, ["(55, 1)", "(55, 1)"])])
def test_box_average_never_pads_wide_on_the_left(size, kernels):
    """MKL-DNN's fast pooling kernel cannot pad many columns on the left (see JIT_SAFE_LEFT_PADDING);
    wide windows pool along the height of the transposed map instead."""
    symbol = BoxAverage(size)(mx.sym.var("x"))
    pools = [node["attrs"] for node in json.loads(symbol.tojson())["nodes"] if node["op"] == "Pooling"]
    assert [attrs["kernel"] for attrs in pools] == kernels
    assert all(int(attrs["pad"].strip("()").split(",")[1]) <= JIT_SAFE_LEFT_PADDING for attrs in pools)


def test_box_average_refuses_even_sizes():
    with pytest.raises(ValueError, match="odd"):
        BoxAverage(4)


def test_cascaded_box_averages_equal_the_large_box_inside_the_map():
    """Vortex module B: 3x3 box, then taps 3 apart, then 9 apart = 9x9 and 27x27 boxes."""
    x = np.random.RandomState(0).uniform(-1, 1, (1, 2, 64, 70)).astype(np.float32)
    box3 = BoxAverage(3)(mx.nd.array(x))
    box9 = DilatedBoxAverage(3)(box3)
    box27 = DilatedBoxAverage(9)(box9).asnumpy()
    np.testing.assert_allclose(box9.asnumpy()[..., 4:-4, 4:-4], _box_mean_reference(x, 9)[..., 4:-4, 4:-4],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(box27[..., 13:-13, 13:-13], _box_mean_reference(x, 27)[..., 13:-13, 13:-13],
                               rtol=1e-4, atol=1e-5)
    # on the border the taps outside the map are left out, so a constant map stays constant
    constant = DilatedBoxAverage(9)(DilatedBoxAverage(3)(BoxAverage(3)(mx.nd.ones((1, 1, 20, 20)))))
    np.testing.assert_allclose(constant.asnumpy(), 1.0, rtol=1e-6)


def test_rates_follow_output_stride():
    assert head_rates("aspp", 16) == (6, 12, 18)
    assert head_rates("aspp", 8) == (12, 24, 36)
    assert head_rates("vortex", 16) == (3, 9, 27)
    assert head_rates("vortex", 8) == (6, 18, 54)


@pytest.mark.parametrize("head", [
    lambda: ASPPHead(64, 5, (1, 2, 3)),
    lambda: VortexHead(64, 5, (3, 9, 27), module="A"),
    lambda: VortexHead(64, 5, (3, 9, 27), module="B"),
])
def test_heads_keep_spatial_size(head):
    net = head()
    net.initialize()
    net.hybridize()
    for h, w in [(7, 9), (12, 12), (1, 1)]:
        assert net(mx.nd.random.uniform(shape=(2, 64, h, w))).shape == (2, 5, h, w)


@pytest.mark.parametrize("head", [ASPPHead, VortexHead])
def test_gluoncv_fusion_adds_a_3x3_conv_after_the_1x1_and_keeps_sizes(head):
    deeplab, gluoncv = head(64, 5, variant="deeplab"), head(64, 5, variant="gluoncv")
    ours, theirs = set(deeplab._collect_params_with_prefix()), set(gluoncv._collect_params_with_prefix())
    # the same 1x1 projection (fusion.project); gluoncv's classifies after a 3x3 conv-BN-ReLU (fusion.block)
    assert ours - theirs == {"fusion.classifier.weight", "fusion.classifier.bias"}
    assert theirs - ours == {f"fusion.block.{name}" for name in (
        "project.conv.weight", "project.bn.gamma", "project.bn.beta", "project.bn.running_mean",
        "project.bn.running_var", "classifier.weight", "classifier.bias")}
    assert gluoncv.fusion.block.project.conv.weight.shape == (256, 256, 3, 3)
    gluoncv.initialize()
    gluoncv.hybridize()
    for h, w in [(7, 9), (1, 1)]:
        assert gluoncv(mx.nd.random.uniform(shape=(2, 64, h, w))).shape == (2, 5, h, w)
    features = head(64, None, variant="gluoncv")  # before a DeepLabV3+ decoder
    features.initialize()
    assert features(mx.nd.random.uniform(shape=(1, 64, 5, 6))).shape == (1, 256, 5, 6)


def test_vortex_modules_agree_where_the_cascade_is_exact():
    """With equal weights, modules A and B differ only where the 27x27 windows leave the map."""
    x = mx.nd.random.uniform(shape=(1, 8, 96, 96))
    head_a, head_b = VortexHead(8, 3, module="A", dropout=0), VortexHead(8, 3, module="B", dropout=0)
    head_a.initialize()
    head_b.initialize()
    for (_, pa), (_, pb) in zip(sorted(head_a._collect_params_with_prefix().items()),
                                sorted(head_b._collect_params_with_prefix().items())):
        pb.set_data(pa.data())
    # compare the pooled-and-convolved branches, before the image-level branch mixes in the borders
    a_branches = [conv(pool(x)) for pool, conv in zip(head_a.pools, head_a.atrous)]
    pooled, b_branches = x, []
    for pool, conv in zip(head_b.pools, head_b.atrous):
        pooled = pool(pooled)
        b_branches.append(conv(pooled))
    margin = 13 + 27  # pooling half-window plus the dilated conv's reach
    for a, b in zip(a_branches, b_branches):
        inner_a, inner_b = (t.asnumpy()[..., margin:-margin, margin:-margin] for t in (a, b))
        assert inner_a.shape == (1, 256, 16, 16)
        np.testing.assert_allclose(inner_a, inner_b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(a_branches[2].asnumpy(), b_branches[2].asnumpy(), atol=1e-5)  # borders differ


def test_vortex_module_b_needs_tripling_rates():
    with pytest.raises(ValueError, match="3x the previous"):
        VortexHead(8, 3, rates=(3, 6, 12), module="B")
    with pytest.raises(ValueError, match="'A' or 'B'"):
        VortexHead(8, 3, module="C")
