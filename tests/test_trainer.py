"""The training step: data parallelism over contexts, frozen BatchNorm, schedules, non-finite losses."""
import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon.models import get_deeplab
from deeplab_gluon.trainer import SegmentationTrainer, TrainingError, make_lr_schedule


def _net(ctxs, freeze_bn=True, seed=0):
    """A small DeepLab whose BatchNorm statistics fit the test batches, so frozen-BN steps stay sane."""
    mx.random.seed(seed)
    calibrated = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, dropout=0.0, norm_kwargs={"momentum": 0.0})
    with mx.autograd.record():  # momentum 0: the running statistics become this batch's
        calibrated(_batch()[0]).sum().backward()
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3, freeze_bn=freeze_bn, dropout=0.0, ctx=ctxs)
    _copy_weights(calibrated, net)
    return net


def _copy_weights(source, target):
    for name, param in target._collect_params_with_prefix().items():
        param.set_data(source._collect_params_with_prefix()[name].data())


def _batch(n=4, size=32, seed=0):
    rng = np.random.RandomState(seed)
    images = mx.nd.array(rng.uniform(-1, 1, (n, 3, size, size)))
    labels = rng.randint(0, 3, (n, size, size)).astype(np.float32)
    labels[0, :8] = 255                      # uneven valid counts per device
    labels[3] = 255
    return images, mx.nd.array(labels)


def _weights(net):
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


def test_two_contexts_take_the_same_step_as_one():
    one, two = [mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]
    net_one, net_two = _net(one), _net(two)
    _copy_weights(net_one, net_two)
    # a small rate: a random network's first gradients are large (its logits are unscaled)
    trainer_one = SegmentationTrainer(net_one, one, learning_rate=1e-4, momentum=0.9, weight_decay=1e-4)
    trainer_two = SegmentationTrainer(net_two, two, learning_rate=1e-4, momentum=0.9, weight_decay=1e-4)
    for step in range(2):  # the second step also checks the momentum buffers agree
        images, labels = _batch(seed=step)
        loss_one = trainer_one.train_step(images, labels, 1e-4)
        loss_two = trainer_two.train_step(images, labels, 1e-4)
        assert loss_two == pytest.approx(loss_one, rel=1e-5)
    before = _weights(_net(one))
    after_one, after_two = _weights(net_one), _weights(net_two)
    moved = [name for name in after_one if not np.allclose(after_one[name], before[name])]
    assert len(moved) > 20
    for name in after_one:
        np.testing.assert_allclose(after_two[name], after_one[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # both devices hold the same weights after the kvstore's reduction
    for param in net_two.collect_params().values():
        np.testing.assert_array_equal(param.data(mx.cpu(0)).asnumpy(), param.data(mx.cpu(1)).asnumpy())


def _batchnorm_state(net):
    return {name: p.data().asnumpy().copy() for name, p in net._collect_params_with_prefix().items()
            if name.endswith(("running_mean", "running_var", "gamma", "beta"))}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_batchnorm_stays_bit_identical(freeze_bn):
    net = _net([mx.cpu()], freeze_bn=freeze_bn)
    before = _batchnorm_state(net)
    trainer = SegmentationTrainer(net, [mx.cpu()], learning_rate=0.01)
    trainer.train_step(*_batch(seed=1), 0.01)  # not the calibration batch, so statistics move
    after = _batchnorm_state(net)
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    if freeze_bn:
        assert changed == []
    else:
        # every statistic and every learnable gamma/beta moves, except the input normalisation's
        # statistics, which are fixed by design (see resnet_v2.DilatedResNetV2)
        statistics = {n for n in before if n.endswith(("running_mean", "running_var"))}
        assert statistics - set(changed) == {"backbone.features.0.running_mean", "backbone.features.0.running_var"}
        assert "backbone.features.2.gamma" in changed and "head.fusion.project.bn.beta" in changed


def test_poly_schedule_matches_the_formula():
    schedule = make_lr_schedule("poly", 7e-3, max_iter=100, power=0.9)
    for iteration in (0, 1, 50, 99, 100):
        assert schedule(iteration) == pytest.approx(7e-3 * (1 - iteration / 100) ** 0.9, abs=1e-12)


def test_step_schedule_drops_tenfold_at_the_fractions():
    schedule = make_lr_schedule("step", 0.1, max_iter=100, steps=(0.5, 0.75))
    assert [schedule(it) for it in (0, 50, 51, 75, 76, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_nonfinite_loss_updates_nothing_and_stops_after_max_bad_steps():
    net = _net([mx.cpu()], freeze_bn=False)
    trainer = SegmentationTrainer(net, [mx.cpu()], learning_rate=0.01, max_bad_steps=2)
    trainer.train_step(*_batch(), 0.01)      # a normal step first, so momentum is non-zero
    finite_loss = trainer.loss_fn

    def poisoned(outputs, label, num_valid):  # NaN loss and NaN gradients, after a real forward pass
        return finite_loss(outputs, label, num_valid) * float("nan")

    before = _weights(net)
    trainer.loss_fn = poisoned
    assert np.isnan(trainer.train_step(*_batch(), 0.01))
    after = _weights(net)
    for name in before:  # weights, momentum-driven updates and BN statistics all untouched
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert trainer.bad_steps == 1 and trainer.iteration == 2
    trainer.loss_fn = finite_loss
    trainer.train_step(*_batch(), 0.01)      # a good step resets the count
    assert trainer.bad_steps == 0
    trainer.loss_fn = poisoned
    trainer.train_step(*_batch(), 0.01)
    with pytest.raises(TrainingError, match=r"2 non-finite losses in a row \(last at iteration 5\)"):
        trainer.train_step(*_batch(), 0.01)


def test_head_lr_mult_applies_to_head_parameters_only():
    net = _net([mx.cpu()])
    SegmentationTrainer(net, [mx.cpu()], learning_rate=0.1, head_lr_mult=10)
    assert {p.lr_mult for p in net.head.collect_params().values()} == {10}
    assert {p.lr_mult for p in net.backbone.collect_params().values()} == {1.0}


@pytest.mark.parametrize("ctxs", [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]], ids=["one device", "two devices"])
def test_gradient_accumulation_equals_one_step_of_the_whole_batch(ctxs):
    """With frozen BatchNorm, iter_size 2 over a batch of 4 (two passes of 2) is one update of batch 4."""
    whole, accumulated = _net([mx.cpu(0)]), _net(ctxs)
    _copy_weights(whole, accumulated)
    trainer_whole = SegmentationTrainer(whole, [mx.cpu(0)], learning_rate=1e-4, momentum=0.9)
    trainer_accumulated = SegmentationTrainer(accumulated, ctxs, learning_rate=1e-4, momentum=0.9, iter_size=2)
    for step in range(2):  # the second update checks that the first one's gradients were cleared
        images, labels = _batch(seed=step)
        assert trainer_accumulated.train_step(images, labels, 1e-4) == pytest.approx(
            trainer_whole.train_step(images, labels, 1e-4), rel=1e-5)
    before, after_whole, after_accumulated = _weights(_net([mx.cpu(0)])), _weights(whole), _weights(accumulated)
    assert sum(not np.allclose(after_whole[name], before[name]) for name in before) > 20
    for name in after_whole:
        np.testing.assert_allclose(after_accumulated[name], after_whole[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert trainer_accumulated.iteration == 2  # iterations count updates, not passes


def test_class_weighted_steps_are_normalised_by_the_weight_sum():
    """Uniform weights of 2 change nothing (the loss is divided by the valid pixels' summed weight);
    weights that favour one class change the update."""
    plain, doubled, skewed = _net([mx.cpu()]), _net([mx.cpu()]), _net([mx.cpu()])
    losses = [SegmentationTrainer(net, [mx.cpu()], learning_rate=1e-3, class_weights=weights).train_step(
        *_batch(), 1e-3) for net, weights in ((plain, None), (doubled, [2.0, 2.0, 2.0]), (skewed, [1.0, 1.0, 5.0]))]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] != pytest.approx(losses[0], rel=1e-3)
    for name, value in _weights(plain).items():
        np.testing.assert_allclose(_weights(doubled)[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    assert any(not np.allclose(_weights(skewed)[name], value) for name, value in _weights(plain).items())
