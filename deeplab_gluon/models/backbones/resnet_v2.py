"""Dilated ResNet-v2 backbone, parameter-compatible with Gluon's model-zoo ``resnetXX_v2``.

The layer tree mirrors ``mxnet.gluon.model_zoo.vision.ResNetV2.features`` index for index
(``features.5.0.bn1.gamma`` ...), so the zoo's ImageNet ``.params`` files load unchanged.
Only strides and dilations differ: once ``output_stride`` is reached, later stages keep
their resolution and dilate their 3x3 convolutions instead (DeepLabV3 paper, section 3.1).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .base import Backbone, check_output_stride, conv3x3

# depth -> (block type, blocks per stage, channels [stem, stage1..stage4])
RESNET_V2_SPECS: Dict[int, Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2), (64, 64, 128, 256, 512)),
    34: ("basic", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    50: ("bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024, 2048)),
    101: ("bottleneck", (3, 4, 23, 3), (64, 256, 512, 1024, 2048)),
    152: ("bottleneck", (3, 8, 36, 3), (64, 256, 512, 1024, 2048)),
}


def _pre_activation_unit(F, x, downsample, layers):
    """BN -> ReLU -> conv for each ``(bn, conv)`` of ``layers``, plus the shortcut: ``x``, or ``downsample``
    of the first BN-ReLU's output (v2 projects the normalised input)."""
    shortcut = x
    for index, (bn, conv) in enumerate(layers):
        x = F.Activation(bn(x), act_type="relu")
        if index == 0 and downsample is not None:
            shortcut = downsample(x)
        x = conv(x)
    return x + shortcut


class BasicBlockV2(HybridBlock):
    """Pre-activation basic block (He et al. 2016) with a dilated second stride-capable conv."""

    def __init__(self, channels, stride, dilation, downsample, in_channels,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        with self.name_scope():
            self.bn1 = norm_layer(in_channels=in_channels, **norm_kwargs)
            self.conv1 = conv3x3(channels, stride, dilation, in_channels)
            self.bn2 = norm_layer(in_channels=channels, **norm_kwargs)
            self.conv2 = conv3x3(channels, 1, dilation, channels)
            self.downsample = (nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
                               if downsample else None)

    def hybrid_forward(self, F, x):
        return _pre_activation_unit(F, x, self.downsample, [(self.bn1, self.conv1), (self.bn2, self.conv2)])


class BottleneckV2(HybridBlock):
    """Pre-activation bottleneck block; the stride and the dilation sit on the 3x3 conv."""

    def __init__(self, channels, stride, dilation, downsample, in_channels,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        mid = channels // 4
        with self.name_scope():
            self.bn1 = norm_layer(in_channels=in_channels, **norm_kwargs)
            self.conv1 = nn.Conv2D(mid, 1, use_bias=False, in_channels=in_channels)
            self.bn2 = norm_layer(in_channels=mid, **norm_kwargs)
            self.conv2 = conv3x3(mid, stride, dilation, mid)
            self.bn3 = norm_layer(in_channels=mid, **norm_kwargs)
            self.conv3 = nn.Conv2D(channels, 1, use_bias=False, in_channels=mid)
            self.downsample = (nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
                               if downsample else None)

    def hybrid_forward(self, F, x):
        return _pre_activation_unit(F, x, self.downsample,
                                    [(self.bn1, self.conv1), (self.bn2, self.conv2), (self.bn3, self.conv3)])


def stage_strides_and_dilations(output_stride: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Strides and dilations of stages 1-4 for an output stride (the stem alone has stride 4).

    >>> stage_strides_and_dilations(16)
    ((1, 2, 2, 1), (1, 1, 1, 2))
    >>> stage_strides_and_dilations(8)
    ((1, 2, 1, 1), (1, 1, 2, 4))
    """
    check_output_stride(output_stride, DilatedResNetV2.OUTPUT_STRIDES)
    strides, dilations = [], []
    current_stride, dilation = 4, 1
    for nominal in (1, 2, 2, 2):
        if current_stride * nominal > output_stride:
            dilation *= nominal  # keep resolution, widen the receptive field instead
            nominal = 1
        current_stride *= nominal
        strides.append(nominal)
        dilations.append(dilation)
    return tuple(strides), tuple(dilations)


class DilatedResNetV2(Backbone):
    """ResNet-v2 feature extractor with a chosen output stride.

    Parameters
    ----------
    depth : 18, 34, 50, 101 or 152.
    output_stride : 8, 16 or 32; the ratio of input size to final feature size.
    multi_grid : unit rates of the last stage's blocks (DeepLabV3's Multi-Grid, e.g. ``(1, 2, 4)``),
        multiplied by that stage's dilation; cycled if the stage has more blocks.
    norm_layer, norm_kwargs : the normalisation layer (``nn.BatchNorm`` or ``SyncBatchNorm``)
        and its arguments, e.g. ``{"use_global_stats": True}`` to freeze statistics.

    Forward: ``x`` (N, 3, H, W) -> ``(low_level, stage3, features)``: ``low_level`` the stage-1
    output (N, C1, ceil(H/4), ceil(W/4)) for a decoder, ``stage3`` (N, C3, ceil(H/s3), ceil(W/s3))
    for the auxiliary head and ``features`` (N, C4, ceil(H/os), ceil(W/os)), already passed through
    the final BatchNorm + ReLU of ResNet-v2.
    """

    CLASSIFIER_PARAMS = ("output.weight", "output.bias")  # the zoo's ImageNet classifier, unused here

    def __init__(self, depth: int = 50, output_stride: int = 16,
                 multi_grid: Optional[Sequence[int]] = None,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        if depth not in RESNET_V2_SPECS:
            raise ValueError(f"ResNet-v2 depth must be one of {sorted(RESNET_V2_SPECS)}, got {depth}")
        block_type, layers, channels = RESNET_V2_SPECS[depth]
        block = BasicBlockV2 if block_type == "basic" else BottleneckV2
        strides, dilations = stage_strides_and_dilations(output_stride)
        norm_kwargs = dict(norm_kwargs or {})
        self.depth, self.output_stride = depth, output_stride
        self.multi_grid = tuple(multi_grid) if multi_grid else (1,)
        self.low_level_channels, self.stage3_channels, self.out_channels = channels[1], channels[3], channels[4]
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            # The zoo's v2 input normalisation: no scale or shift, statistics only. It always uses its
            # stored statistics: MXNet updates running statistics in the backward pass, which never
            # reaches this layer (the image needs no gradient), so batch statistics in training would
            # never match the ones used at inference.
            self.features.add(norm_layer(in_channels=3, scale=False, center=False,
                                         **dict(norm_kwargs, use_global_stats=True)))
            self.features.add(nn.Conv2D(channels[0], 7, 2, 3, use_bias=False, in_channels=3),
                              norm_layer(in_channels=channels[0], **norm_kwargs), nn.Activation("relu"),
                              nn.MaxPool2D(3, 2, 1))
            in_channels = channels[0]
            for i, num_blocks in enumerate(layers):
                stage = nn.HybridSequential(prefix=f"stage{i + 1}_")
                with stage.name_scope():
                    for b in range(num_blocks):
                        unit_rate = self.multi_grid[b % len(self.multi_grid)] if i == 3 else 1
                        stage.add(block(channels[i + 1], strides[i] if b == 0 else 1,
                                        dilations[i] * unit_rate,
                                        downsample=(b == 0 and channels[i + 1] != in_channels),
                                        in_channels=in_channels if b == 0 else channels[i + 1],
                                        norm_layer=norm_layer, norm_kwargs=norm_kwargs, prefix=""))
                self.features.add(stage)
                in_channels = channels[i + 1]
            self.features.add(norm_layer(in_channels=in_channels, **norm_kwargs), nn.Activation("relu"))

    def hybrid_forward(self, F, x):
        low_level = stage3 = None
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == 5:  # stem is 0-4, stages are 5-8
                low_level = x
            elif index == 7:
                stage3 = x
        return low_level, stage3, x

    @property
    def zoo_name(self) -> str:
        return f"resnet{self.depth}_v2"

    def zoo_network(self):
        return mx.gluon.model_zoo.vision.get_model(self.zoo_name)

