"""What every backbone shares: its contract's attributes and loading its model-zoo ImageNet weights.

The contract itself is in the package docstring (``backbones/__init__.py``). Each backbone
mirrors its zoo network's layer tree attribute for attribute, so the zoo's ``.params`` file
(structural names such as ``layer1.0.conv1.weight``) loads unchanged.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Optional, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ...errors import mxnet_reason


def check_output_stride(output_stride: int, supported: Tuple[int, ...]) -> None:
    """Refuse an output stride the backbone cannot produce (the message resnet_v2 uses)."""
    if output_stride not in supported:
        raise ValueError(f"output_stride must be one of {supported}, got {output_stride}")


def conv3x3(channels: int, stride: int, dilation: int, in_channels: int) -> nn.Conv2D:
    """The ResNets' 3x3 conv (no bias), padded by its dilation so that only ``stride`` changes the size."""
    return nn.Conv2D(channels, 3, strides=stride, padding=dilation, dilation=dilation,
                     use_bias=False, in_channels=in_channels)


class PretrainedFileError(ValueError):
    """An ImageNet parameter file that cannot be read or does not fit the backbone; the message is one line."""


def read_zoo_params(path: str, zoo_network: Callable[[], mx.gluon.Block], zoo_name: str) -> Dict[str, mx.nd.NDArray]:
    """Read a model-zoo parameter file as ``{structural name: array}``.

    Files written by ``save_parameters`` are read directly. Legacy ``save_params`` files
    (prefixed names such as ``resnetv1b_conv0_weight``) are read through ``zoo_network()``,
    the zoo's own network built without weights, which knows its prefixes.
    """
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise PretrainedFileError(f"{path} is not a parameter file: {mxnet_reason(err)}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise PretrainedFileError(f"{path} holds no named parameters")
    if any("." in name for name in loaded):
        return loaded
    zoo = zoo_network()
    try:
        zoo.load_parameters(path, ctx=mx.cpu())
    except (AssertionError, mx.base.MXNetError, KeyError, ValueError) as err:
        raise PretrainedFileError(f"{path} is not a {zoo_name} parameter file: {mxnet_reason(err)}") from None
    return {name: p.data() for name, p in zoo._collect_params_with_prefix().items()}


# (block kind, blocks per stage) -> depth: the ResNets every zoo ships
RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
                 ("bottleneck", (3, 4, 23, 3)): 101, ("bottleneck", (3, 8, 36, 3)): 152}


def _resnet_depth(names, pattern: str, stages, bottleneck: bool) -> Optional[int]:
    found = {tuple(map(int, m.groups())) for m in map(re.compile(pattern).match, names) if m}
    blocks = tuple(len({b for s, b in found if s == stage}) for stage in stages)
    return RESNET_DEPTHS.get(("bottleneck" if bottleneck else "basic", blocks))


def guess_zoo_model(shapes: Dict[str, Tuple[int, ...]]) -> Optional[str]:
    """Which zoo network a ``{structural name: shape}`` file comes from, or None.

    Only looks at names and one or two shapes, so it is cheap; it names the families this
    package has backbones for (ResNet-v1b/c/d/e/s, Gluon ResNet-v2, MobileNetV2, Xception-65).
    """
    names = set(shapes)
    if "midflow.0.rep.1.conv1.weight" in names:
        return "xception65 (gluoncv 'xception')"
    if "features.3.out.0.weight" in names and "features.0.weight" in names:
        width = shapes["features.0.weight"][0] / 32
        layout = "Gluon model zoo" if "features.3.out.6.weight" in names else "gluoncv"
        return f"mobilenetv2_{width} ({layout} layout)"
    if "layer1.0.conv1.weight" in names:
        depth = _resnet_depth(names, r"layer(\d)\.(\d+)\.", (1, 2, 3, 4), "layer1.0.conv3.weight" in names)
        if depth is None:
            return None
        if "conv1.weight" in names:
            variant = "v1b"
        else:
            wide_stem = shapes.get("conv1.0.weight", (0,))[0] == 64
            avg_down = "layer2.0.downsample.1.weight" in names  # v1d/v1e: an AvgPool comes first
            variant = {(True, False): "v1s", (True, True): "v1e", (False, False): "v1c", (False, True): "v1d"}[
                (wide_stem, avg_down)]
        return f"resnet{depth}_{variant}"
    if "features.5.0.bn1.gamma" in names:
        depth = _resnet_depth(names, r"features\.([5-8])\.(\d+)\.", (5, 6, 7, 8), "features.5.0.conv3.weight" in names)
        return None if depth is None else f"resnet{depth}_v2"
    return None


class Backbone(HybridBlock):
    """Base of every backbone: the attributes the network composes with and zoo weight loading.

    Subclasses set ``low_level_channels``, ``stage3_channels``, ``out_channels`` and
    ``output_stride`` in ``__init__``, and define ``zoo_name`` (the zoo's model name) and
    ``zoo_network()`` (the zoo's network, unweighted, to read legacy files through).
    """

    OUTPUT_STRIDES: Tuple[int, ...] = (8, 16, 32)
    # zoo parameters this backbone leaves out (the ImageNet classifier); sets per class
    CLASSIFIER_PARAMS: Tuple[str, ...] = ("fc.weight", "fc.bias")

    low_level_channels: int
    stage3_channels: int
    out_channels: int
    output_stride: int

    @property
    def zoo_name(self) -> str:
        raise NotImplementedError

    def zoo_network(self) -> mx.gluon.Block:
        raise NotImplementedError

    def load_pretrained(self, path: str, ctx=None) -> None:
        """Load the zoo's ImageNet ``.params`` file, ignoring only its classifier.

        Raises :class:`PretrainedFileError` (a ``ValueError``) in one line naming which zoo network
        the file looks like, when that can be told, and counts and examples of the missing and
        unexpected parameters, when the file does not fit.
        """
        loaded = read_zoo_params(path, self.zoo_network, self.zoo_name)
        params = self._collect_params_with_prefix()
        missing = sorted(set(params) - set(loaded))
        unexpected = sorted(set(loaded) - set(params) - set(self.CLASSIFIER_PARAMS))
        mismatched = [name for name in sorted(set(params) & set(loaded))
                      if params[name].shape and 0 not in params[name].shape
                      and tuple(params[name].shape) != tuple(loaded[name].shape)]
        if missing or unexpected or mismatched:
            guess = guess_zoo_model({name: tuple(value.shape) for name, value in loaded.items()})
            what = (f"is a {guess} parameter file, not {self.zoo_name}" if guess and guess != self.zoo_name
                    else f"is not a {self.zoo_name} parameter file")
            shapes = (f", {len(mismatched)} of another shape (e.g. {mismatched[0]}: "
                      f"{tuple(loaded[mismatched[0]].shape)}, expected {params[mismatched[0]].shape})"
                      if mismatched else "")
            raise PretrainedFileError(
                f"{path} {what}: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}){shapes}")
        for name, param in params.items():
            param._load_init(loaded[name], ctx or mx.cpu())
