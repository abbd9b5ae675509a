"""SegmentationLoss against a numpy computation of the same quantity, with gradients."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from deeplab_gluon.loss import SegmentationLoss, count_valid, valid_weight


def random_batch(seed, shape=(2, 5, 6, 7), ignore_fraction=0.2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=shape)
    label = rng.integers(0, shape[1], size=(shape[0],) + shape[2:]).astype(np.float64)
    label[rng.random(label.shape) < ignore_fraction] = 255
    return logits, label


def reference(logits, label, num_valid=None, ignore_label=255):
    """(summed NLL over valid pixels / max(num_valid, 1), its gradient w.r.t. the logits), in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    valid = label != ignore_label
    safe = np.where(valid, label, 0).astype(np.int64)
    picked = np.take_along_axis(log_prob, safe[:, None], axis=1)[:, 0]
    denominator = max(valid.sum() if num_valid is None else num_valid, 1)
    one_hot = np.eye(logits.shape[1])[safe].transpose(0, 3, 1, 2)
    gradient = (np.exp(log_prob) - one_hot) * valid[:, None] / denominator
    return -(picked * valid).sum() / denominator, gradient


def loss_and_grads(loss_fn, arrays, label, num_valid=None):
    """Run the loss under autograd; arrays are numpy logits (one, or a tuple for main + aux)."""
    inputs = [mx.nd.array(a, dtype="float32") for a in (arrays if isinstance(arrays, tuple) else (arrays,))]
    for x in inputs:
        x.attach_grad()
    with autograd.record():
        outputs = tuple(inputs) if isinstance(arrays, tuple) else inputs[0]
        loss = loss_fn(outputs, mx.nd.array(label, dtype="float32"), num_valid)
    loss.backward()
    return loss, [x.grad.asnumpy() for x in inputs]


def test_matches_numpy_reference():
    logits, label = random_batch(0)
    loss, (grad,) = loss_and_grads(SegmentationLoss(), logits, label)
    expected, expected_grad = reference(logits, label)
    assert loss.shape == (1,)
    np.testing.assert_allclose(loss.asscalar(), expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    assert (grad[np.broadcast_to((label == 255)[:, None], grad.shape)] == 0).all()  # ignored: exactly 0


def test_hand_computed_value():
    # One image, 2 classes, 3 pixels: logits (0, 0) -> -log(1/2); (ln 3, 0) with label 0 -> -log(3/4);
    # the third pixel is void. Mean over the 2 valid pixels.
    logits = np.array([[[[0.0, np.log(3.0), 5.0]], [[0.0, 0.0, -5.0]]]])
    label = np.array([[[1, 0, 255]]], dtype=np.float64)
    loss, _ = loss_and_grads(SegmentationLoss(), logits, label)
    np.testing.assert_allclose(loss.asscalar(), (np.log(2) + np.log(4 / 3)) / 2, rtol=1e-6)


def test_aux_weight():
    logits, label = random_batch(1)
    aux_logits, _ = random_batch(2)
    loss, (grad, aux_grad) = loss_and_grads(SegmentationLoss(aux_weight=0.4), (logits, aux_logits), label)
    main, main_grad = reference(logits, label)
    aux, aux_expected_grad = reference(aux_logits, label)
    np.testing.assert_allclose(loss.asscalar(), main + 0.4 * aux, rtol=1e-5)
    np.testing.assert_allclose(grad, main_grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(aux_grad, 0.4 * aux_expected_grad, rtol=1e-4, atol=1e-7)
    unweighted, _ = loss_and_grads(SegmentationLoss(aux_weight=0), (logits, aux_logits), label)
    np.testing.assert_allclose(unweighted.asscalar(), main, rtol=1e-5)


def test_all_ignored_gives_zero_loss_and_gradient():
    logits, label = random_batch(3, ignore_fraction=1.1)
    logits[0, 0, 0, 0] = 80.0  # large logits must not produce NaN either
    loss, (grad, aux_grad) = loss_and_grads(SegmentationLoss(), (logits, logits * 2), label)
    assert loss.asscalar() == 0.0
    assert np.isfinite(grad).all() and (grad == 0).all() and (aux_grad == 0).all()


def test_split_batch_with_shared_count_reproduces_full_batch():
    logits, label = random_batch(4, shape=(4, 3, 5, 6), ignore_fraction=0.4)
    loss_fn = SegmentationLoss()
    full, (full_grad,) = loss_and_grads(loss_fn, logits, label)
    total = count_valid(mx.nd.array(label))
    assert total == (label != 255).sum()
    for num_valid in (total, mx.nd.array([total])):  # an int, or the NDArray a trainer sums over devices
        first, (grad_a,) = loss_and_grads(loss_fn, logits[:2], label[:2], num_valid)
        second, (grad_b,) = loss_and_grads(loss_fn, logits[2:], label[2:], num_valid)
        np.testing.assert_allclose(first.asscalar() + second.asscalar(), full.asscalar(), rtol=1e-6)
        np.testing.assert_allclose(np.concatenate([grad_a, grad_b]), full_grad, rtol=1e-5, atol=1e-9)
    # Without the shared count, each half averages on its own: not the batch average.
    alone, _ = loss_and_grads(loss_fn, logits[:2], label[:2])
    assert not np.isclose(alone.asscalar(), first.asscalar())


def test_count_valid_and_shape_errors():
    label = np.array([[0, 255, 3], [255, 255, 1]])
    assert count_valid(label) == 3 and count_valid(mx.nd.array(label)) == 3
    assert count_valid(label, ignore_label=3) == 5
    with pytest.raises(ValueError, match=r"do not match label"):
        SegmentationLoss()(mx.nd.zeros((1, 2, 4, 4)), mx.nd.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match="logits or \\(logits, aux_logits\\)"):
        SegmentationLoss()((mx.nd.zeros((1, 2, 4, 4)),) * 3, mx.nd.zeros((1, 4, 4)))


def test_class_weighted_loss_by_hand():
    """Weighted ignore-label cross-entropy, normalised by the valid pixels' summed weight (issue 16).

    Three pixels, two classes, weights (1, 3): pixel 0 is class 0 with logits (0, 0), so -log p = ln 2;
    pixel 1 is class 1 with logits (0, ln 3), so p = 3/4 and -log p = ln(4/3); pixel 2 is void. Loss =
    (1 * ln 2 + 3 * ln(4/3)) / (1 + 3). Gradient: w * (softmax - one_hot) / 4 per valid pixel, 0 on void.
    """
    logits = np.array([[[[0.0, 0.0, 5.0]], [[0.0, np.log(3.0), -5.0]]]])  # (1, 2, 1, 3)
    label = np.array([[[0, 1, 255]]], dtype=np.float64)
    loss_fn = SegmentationLoss(aux_weight=0.0, class_weights=[1.0, 3.0])
    loss, (grad,) = loss_and_grads(loss_fn, logits, label)
    np.testing.assert_allclose(loss.asscalar(), (np.log(2.0) + 3 * np.log(4.0 / 3.0)) / 4, rtol=1e-6)
    expected = np.array([[[[-1 / 8, 3 / 16, 0.0]], [[1 / 8, -3 / 16, 0.0]]]])
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert valid_weight(label, 255, [1.0, 3.0]) == 4.0 and valid_weight(label) == 2.0
    # a trainer's split: per-device sums over the batch's total weight add up to the whole
    whole = loss_fn(mx.nd.array(logits), mx.nd.array(label)).asscalar()
    parts = sum(loss_fn(mx.nd.array(logits[..., s]), mx.nd.array(label[..., s]), 4.0).asscalar()
                for s in (slice(0, 1), slice(1, 3)))
    np.testing.assert_allclose(parts, whole, rtol=1e-6)


def test_unit_class_weights_change_nothing():
    logits, label = random_batch(3)
    plain, (plain_grad,) = loss_and_grads(SegmentationLoss(), logits, label)
    weighted, (weighted_grad,) = loss_and_grads(SegmentationLoss(class_weights=np.ones(5)), logits, label)
    np.testing.assert_allclose(weighted.asscalar(), plain.asscalar(), rtol=1e-6)
    np.testing.assert_allclose(weighted_grad, plain_grad, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="3 class weights for logits of 5 classes"):
        SegmentationLoss(class_weights=[1, 2, 3])(mx.nd.array(logits), mx.nd.array(label))
