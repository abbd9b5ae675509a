"""predict_probs / predict_labels: flip and multi-scale averaging, checked against hand computations."""
import argparse
import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon.cli import parse_scales
from deeplab_gluon.inference import image_to_batch, predict_labels, predict_probs
from deeplab_gluon.data import normalize_image
from tiny_model import tiny_net


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def resize_align_corners(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) with corner pixels mapped onto corner pixels, written independently
    of MXNet: output pixel i samples input position i * (H - 1) / (height - 1)."""
    _, _, in_h, in_w = array.shape

    def axis(n_out, n_in):
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (pos - low)

    y0, y1, fy = axis(height, in_h)
    x0, x1, fx = axis(width, in_w)
    rows = array[:, :, y0] * (1 - fy)[:, None] + array[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def net_probs(net, image: np.ndarray) -> np.ndarray:
    return softmax(net(mx.nd.array(image)).asnumpy().astype(np.float64))


@pytest.fixture(scope="module")
def net():
    return tiny_net(num_classes=4)


def test_flip_is_the_mean_of_the_image_and_its_mirror_mirrored_back(net):
    image = np.random.RandomState(1).normal(size=(1, 3, 40, 52)).astype(np.float32)
    plain = net_probs(net, image)
    mirrored = net_probs(net, image[..., ::-1].copy())[..., ::-1]
    assert np.abs(plain - mirrored).max() > 1e-2  # a random net is not mirror-equivariant: flip matters
    got = predict_probs(net, mx.nd.array(image), flip=True).asnumpy()
    np.testing.assert_allclose(got, (plain + mirrored) / 2, atol=1e-5)


def symmetrise_kernels(net) -> None:
    """Make every convolution kernel left-right symmetric: the network then commutes with mirroring
    (for widths where every strided layer samples a mirror-symmetric grid, see below)."""
    for param in net.collect_params().values():
        data = param.data()
        if param.name.endswith("weight") and data.ndim == 4:
            param.set_data((data + data.flip(axis=3)) / 2)


def test_flip_changes_nothing_on_a_symmetric_image_for_a_mirror_equivariant_net():
    # p_flip(x) = (p(x) + M p(M x)) / 2. If p(M x) = M p(x) (equivariance) and M x = x (symmetric
    # image), both terms are p(x). Symmetric kernels make each conv equivariant, but a strided layer
    # only if its sampling grid (columns 0, s, 2s, ...) is itself symmetric, i.e. the last sampled
    # column is the last column: width 65 -> 33 -> 17 -> 9 -> 5 keeps that through every stride 2
    # (an even width such as 64 breaks it), and the align-corners upsampling back to 65 is symmetric too.
    net = tiny_net(num_classes=4, seed=3)
    half = np.random.RandomState(2).normal(size=(1, 3, 48, 33)).astype(np.float32)
    image = np.concatenate([half, half[..., :-1][..., ::-1]], axis=3)  # width 65, column 32 is the axis
    assert image.shape[3] == 65 and np.array_equal(image, image[..., ::-1])
    x = mx.nd.array(image)
    before = predict_probs(net, x).asnumpy()
    assert np.abs(before - before[..., ::-1]).max() > 1e-2  # random kernels: output not symmetric
    symmetrise_kernels(net)
    plain = predict_probs(net, x).asnumpy()
    np.testing.assert_allclose(plain, plain[..., ::-1], atol=1e-5)  # the net is now equivariant here
    np.testing.assert_allclose(predict_probs(net, x, flip=True).asnumpy(), plain, atol=1e-5)
    even = mx.nd.array(np.concatenate([half, half[..., ::-1]], axis=3))  # width 66: symmetric image, odd grid
    probs = predict_probs(net, even).asnumpy()
    assert np.abs(probs - probs[..., ::-1]).max() > 1e-4  # why the width matters


def test_multi_scale_with_flip_is_the_mean_of_resized_softmaxes(net):
    image = np.random.RandomState(4).normal(size=(1, 3, 36, 44)).astype(np.float32)
    scales = (0.75, 1.0, 1.25)  # 27x33, 36x44, 45x55: no rounding ties
    expected = []
    for scale in scales:
        scaled = resize_align_corners(image, round(36 * scale), round(44 * scale)).astype(np.float32)
        for mirror in (False, True):
            probs = net_probs(net, scaled[..., ::-1].copy() if mirror else scaled)
            probs = probs[..., ::-1] if mirror else probs
            expected.append(resize_align_corners(probs, 36, 44))
    expected = np.mean(expected, axis=0)
    got = predict_probs(net, mx.nd.array(image), scales=scales, flip=True).asnumpy()
    assert got.shape == (1, 4, 36, 44)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    single = net_probs(net, image)
    assert np.abs(single - expected).max() > 1e-2  # the scales do change the answer
    labels = predict_labels(net, mx.nd.array(image), scales=scales, flip=True).asnumpy()
    np.testing.assert_array_equal(labels, expected[0].argmax(axis=0))


def test_single_scale_labels_are_the_argmax_of_the_logits(net):
    image = np.random.RandomState(5).normal(size=(1, 3, 29, 31)).astype(np.float32)
    logits = net(mx.nd.array(image)).asnumpy()
    labels = predict_labels(net, mx.nd.array(image)).asnumpy()
    assert labels.dtype == np.int32 and labels.shape == (29, 31)
    np.testing.assert_array_equal(labels, logits[0].argmax(axis=0))
    assert len(np.unique(labels)) > 1  # soft logits: the test sees more than one class
    np.testing.assert_allclose(predict_probs(net, mx.nd.array(image)).asnumpy(), softmax(logits), atol=1e-6)


def test_image_to_batch_normalises_like_evaluation():
    image = np.random.RandomState(6).randint(0, 256, size=(7, 9, 3)).astype(np.uint8)
    batch = image_to_batch(image)
    assert batch.shape == (1, 3, 7, 9) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch.asnumpy()[0], normalize_image(image))


def test_parse_scales():
    assert tuple(parse_scales("0.5, 0.75,1.0")) == (0.5, 0.75, 1.0)
    for bad, why in (("", "positive"), ("a,1", "comma-separated numbers"), ("0,1", "positive"), ("-1", "positive")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            parse_scales(bad)
