"""Dilated MobileNetV2 backbone, parameter-compatible with gluoncv's and Gluon's ``mobilenetv2_1.0``.

The two zoos name their layers alike (``features.3.out.0.weight`` ...) but differ in the
first inverted residual, whose expansion factor is 1: gluoncv (like the paper and TF) has no
expansion conv there, Gluon's model zoo keeps a 32 -> 32 1x1 conv. ``layout`` picks which file
the network takes: ``"gluoncv"`` (default) or ``"gluon"``.

As in TF DeepLab's MobileNetV2 (its ``layer_18`` end point), the features are the last inverted
residual's 320 channels: the zoo's 1x1 conv to 1280 channels (``features.20``/``21``) belongs to
the ImageNet classifier and is left out. Once ``output_stride`` is reached, a block that would
stride keeps the resolution and the blocks after it dilate their depthwise conv by the
skipped stride (TF slim's ``mobilenet_base`` rule: the block itself keeps the old rate).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from mxnet.gluon import HybridBlock, nn

from .base import Backbone, check_output_stride

LAYOUTS = ("gluoncv", "gluon")
# (expansion t, output channels, stride) of the 17 inverted residuals, at width multiplier 1.0
INVERTED_RESIDUALS: Tuple[Tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
STEM_CHANNELS = 32
FIRST_BLOCK = 3      # features.0-2 are the stem conv, its BN and ReLU6
LOW_LEVEL_BLOCK = 2  # the last block at stride 4 (24 channels)
STAGE3_BLOCK = 12    # the last block at stride 16 (96 channels), the auxiliary head's input


class ReLU6(HybridBlock):
    """min(max(x, 0), 6), MobileNetV2's activation; a Block so it takes an index, as in the zoos."""

    def hybrid_forward(self, F, x):
        return F.clip(x, 0, 6)


def _add_conv(seq, in_channels, channels, kernel=1, stride=1, dilation=1, groups=1, relu6=True,
              norm_layer=nn.BatchNorm, norm_kwargs=None):
    seq.add(nn.Conv2D(channels, kernel, stride, dilation * (kernel // 2), dilation=dilation, groups=groups,
                      use_bias=False, in_channels=in_channels))
    seq.add(norm_layer(in_channels=channels, **(norm_kwargs or {})))
    if relu6:
        seq.add(ReLU6())


class InvertedResidual(HybridBlock):
    """1x1 expand (t x) -> 3x3 depthwise (strided, dilated) -> 1x1 linear project; identity shortcut
    when the shape is kept. ``expand`` False drops the expansion conv (gluoncv's t == 1 block)."""

    def __init__(self, in_channels, channels, t, stride, dilation, expand=True,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.use_shortcut = stride == 1 and in_channels == channels
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        hidden = in_channels * t
        with self.name_scope():
            self.out = nn.HybridSequential(prefix="")
            if expand:
                _add_conv(self.out, in_channels, hidden, **norm)
            _add_conv(self.out, hidden, hidden, 3, stride, dilation, groups=hidden, **norm)
            _add_conv(self.out, hidden, channels, relu6=False, **norm)

    def hybrid_forward(self, F, x):
        out = self.out(x)
        return out + x if self.use_shortcut else out


def block_strides_and_dilations(output_stride: int) -> Tuple[List[int], List[int]]:
    """Stride and depthwise dilation of each inverted residual (TF slim's output-stride rule).

    >>> block_strides_and_dilations(16)[1][12:]
    [1, 1, 2, 2, 2]
    """
    strides, dilations = [], []
    current, rate = 2, 1  # the stem conv has stride 2
    for _, _, stride in INVERTED_RESIDUALS:
        if current == output_stride:
            strides.append(1)
            dilations.append(rate)
            rate *= stride
        else:
            strides.append(stride)
            dilations.append(1)
            current *= stride
    return strides, dilations


class DilatedMobileNetV2(Backbone):
    """MobileNetV2 (width 1.0) feature extractor with a chosen output stride.

    Parameters
    ----------
    layout : ``"gluoncv"`` (gluoncv's ``mobilenetv2_1.0`` file) or ``"gluon"`` (Gluon model zoo's).
    output_stride : 8, 16 or 32.
    multi_grid : not used by MobileNetV2 (TF DeepLab has none for it); only None or unit rates.
    norm_layer, norm_kwargs : the normalisation layer and its arguments.

    Forward: ``x`` (N, 3, H, W) -> ``(low_level, stage3, features)``: the output of the last
    stride-4 block (N, 24, ceil(H/4), ceil(W/4)); of the last 96-channel block, the last one
    before the final stride-32 stage, standing for ResNet's stage 3 (N, 96, ceil(H/s3), ceil(W/s3))
    with s3 = min(16, os); and of the last block (N, 320, ceil(H/os), ceil(W/os)).
    """

    # the zoo's 1280-channel 1x1 conv + BN and its classifier
    CLASSIFIER_PARAMS = ("features.20.weight", "features.21.gamma", "features.21.beta",
                         "features.21.running_mean", "features.21.running_var", "output.0.weight")

    def __init__(self, layout: str = "gluoncv", output_stride: int = 16, multi_grid: Optional[Sequence[int]] = None,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"MobileNetV2 layout must be one of {LAYOUTS}, got {layout!r}")
        check_output_stride(output_stride, self.OUTPUT_STRIDES)
        if multi_grid and any(rate != 1 for rate in multi_grid):
            raise ValueError(f"MobileNetV2 has no multi-grid (its last stage is one block), got {tuple(multi_grid)}")
        self.layout, self.output_stride = layout, output_stride
        strides, self.dilations = block_strides_and_dilations(output_stride)
        norm = dict(norm_layer=norm_layer, norm_kwargs=dict(norm_kwargs or {}))
        self.low_level_channels = INVERTED_RESIDUALS[LOW_LEVEL_BLOCK][1]
        self.stage3_channels = INVERTED_RESIDUALS[STAGE3_BLOCK][1]
        self.out_channels = INVERTED_RESIDUALS[-1][1]
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="features_")
            with self.features.name_scope():
                _add_conv(self.features, 3, STEM_CHANNELS, 3, stride=2, **norm)
                in_channels = STEM_CHANNELS
                for (t, channels, _), stride, dilation in zip(INVERTED_RESIDUALS, strides, self.dilations):
                    self.features.add(InvertedResidual(in_channels, channels, t, stride, dilation,
                                                       expand=(t != 1 or layout == "gluon"), **norm))
                    in_channels = channels

    @property
    def zoo_name(self) -> str:
        return "mobilenetv2_1.0 (" + ("Gluon model zoo" if self.layout == "gluon" else "gluoncv") + " layout)"

    def zoo_network(self):
        if self.layout == "gluon":
            from mxnet.gluon.model_zoo import vision

            return vision.get_model("mobilenetv2_1.0")
        from gluoncv.model_zoo import get_model

        return get_model("mobilenetv2_1.0")

    def hybrid_forward(self, F, x):
        low_level = stage3 = None
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == FIRST_BLOCK + LOW_LEVEL_BLOCK:
                low_level = x
            elif index == FIRST_BLOCK + STAGE3_BLOCK:
                stage3 = x
        return low_level, stage3, x
