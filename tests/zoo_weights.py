"""Random weights for a reference (model-zoo or gluoncv) network, for the weight-compatibility tests."""
import mxnet as mx
import numpy as np


def randomise_parameters(params, seed, small_gamma=lambda name: False):
    """Set every parameter of ``params`` (``{name: Parameter}``) at random, BN statistics included, so a
    misplaced one shows: He-scaled conv weights, gammas and variances in [0.5, 1.5), the rest in [-0.1, 0.1).

    ``small_gamma(name)`` picks gammas drawn in [0.05, 0.15) instead (e.g. a residual branch's last BN, as in
    zero-gamma initialisation, so logits stay O(10) through a deep network and a relative tolerance means something).
    """
    rng = np.random.RandomState(seed)
    for name, param in params.items():
        shape = param.shape
        if name.endswith("weight") and len(shape) == 4:
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name.endswith("gamma") and small_gamma(name):
            value = rng.uniform(0.05, 0.15, shape)
        elif name.endswith(("gamma", "running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        param.set_data(mx.nd.array(value))


def randomised(zoo, seed):
    """``zoo`` (a model-zoo block) initialised, shapes finished on a 32x32 input, every parameter random."""
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 32, 32)))  # finish deferred shapes
    randomise_parameters(zoo.collect_params(), seed)
    return zoo
