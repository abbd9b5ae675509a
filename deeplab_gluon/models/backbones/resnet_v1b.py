"""Dilated ResNet-v1b / v1s backbone, parameter-compatible with gluoncv's ``resnetXX_v1b`` / ``_v1s``.

ResNet-v1b puts the stride of a bottleneck on its 3x3 conv (not the first 1x1, as in v1);
v1s replaces the 7x7 stem with three 3x3 convs (64, 64, 128 wide), the stem gluoncv's
DeepLab uses. The layer tree mirrors ``gluoncv.model_zoo.resnetv1b.ResNetV1b`` attribute for
attribute (``conv1``, ``bn1``, ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight`` ...),
so gluoncv's ImageNet ``.params`` files load unchanged.

Two dilation rules, chosen by ``dilation_rule``:

- ``"uniform"`` (default, the rule of this package's ResNet-v2): once ``output_stride`` is
  reached, a stage keeps its resolution and every 3x3 conv in it uses the stage's dilation.
- ``"gluoncv"``: gluoncv's ``dilated=True`` network (layer3 dilation 2, layer4 dilation 4 at
  OS8), where the first block of a dilated stage uses half the stage's dilation in its first
  3x3 conv (a basic block's second conv keeps the full one). Needed to reproduce gluoncv's
  DeepLab exactly.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from mxnet.gluon import HybridBlock, nn

from .resnet_v2 import stage_strides_and_dilations
from .base import Backbone, conv3x3

# depth -> (block type, blocks per stage); stage widths are 64, 128, 256, 512 times the expansion
RESNET_V1B_SPECS: Dict[int, Tuple[str, Tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# gluoncv ships v1s (deep stem) only for the bottleneck depths
VARIANTS = {"v1b": (18, 34, 50, 101, 152), "v1s": (50, 101, 152)}
DILATION_RULES = ("uniform", "gluoncv")
STAGE_WIDTHS = (64, 128, 256, 512)


def _downsample(channels: int, stride: int, in_channels: int, norm_layer, norm_kwargs) -> nn.HybridSequential:
    """1x1 projection of the shortcut; a Sequential because the zoo names it ``downsample.0/.1``."""
    block = nn.HybridSequential(prefix="down_")
    with block.name_scope():
        block.add(nn.Conv2D(channels, 1, strides=stride, use_bias=False, in_channels=in_channels))
        block.add(norm_layer(in_channels=channels, **norm_kwargs))
    return block


class BasicBlockV1b(HybridBlock):
    """Two 3x3 convs (the first strided), post-activation; ``dilations`` gives each conv's rate."""

    expansion = 1

    def __init__(self, planes, stride, dilations, downsample, in_channels,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        with self.name_scope():
            self.conv1 = conv3x3(planes, stride, dilations[0], in_channels)
            self.bn1 = norm_layer(in_channels=planes, **norm_kwargs)
            self.conv2 = conv3x3(planes, 1, dilations[1], planes)
            self.bn2 = norm_layer(in_channels=planes, **norm_kwargs)
            self.downsample = (_downsample(planes, stride, in_channels, norm_layer, norm_kwargs)
                               if downsample else None)

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        out = self.bn2(self.conv2(out))
        return F.Activation(out + residual, act_type="relu")


class BottleneckV1b(HybridBlock):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 x4, post-activation; only the 3x3 conv dilates."""

    expansion = 4

    def __init__(self, planes, stride, dilations, downsample, in_channels,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, 1, use_bias=False, in_channels=in_channels)
            self.bn1 = norm_layer(in_channels=planes, **norm_kwargs)
            self.conv2 = conv3x3(planes, stride, dilations[0], planes)
            self.bn2 = norm_layer(in_channels=planes, **norm_kwargs)
            self.conv3 = nn.Conv2D(planes * 4, 1, use_bias=False, in_channels=planes)
            self.bn3 = norm_layer(in_channels=planes * 4, **norm_kwargs)
            self.downsample = (_downsample(planes * 4, stride, in_channels, norm_layer, norm_kwargs)
                               if downsample else None)

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        out = F.Activation(self.bn2(self.conv2(out)), act_type="relu")
        out = self.bn3(self.conv3(out))
        return F.Activation(out + residual, act_type="relu")


def block_dilations(stage_dilation: int, block_index: int, unit_rate: int, rule: str) -> Tuple[int, int]:
    """Dilations of a block's (first, second) 3x3 conv; bottlenecks use only the first.

    >>> block_dilations(4, 0, 1, "uniform"), block_dilations(4, 0, 1, "gluoncv")
    ((4, 4), (2, 4))
    >>> block_dilations(2, 0, 1, "gluoncv"), block_dilations(2, 1, 1, "gluoncv")
    ((1, 2), (2, 2))
    """
    rate = stage_dilation * unit_rate
    if rule == "gluoncv" and block_index == 0:
        # gluoncv's _make_layer: the block that would have strided uses dilation/2, so the
        # receptive field grows one step at a time; a basic block's conv2 keeps the full rate
        return max(stage_dilation // 2, 1) * unit_rate, rate
    return rate, rate


class DilatedResNetV1b(Backbone):
    """ResNet-v1b (``variant="v1b"``) or v1s (``"v1s"``) feature extractor with a chosen output stride.

    Parameters
    ----------
    depth : 18, 34, 50, 101 or 152 (v1s: 50, 101, 152).
    variant : ``"v1b"`` (7x7 stem) or ``"v1s"`` (three 3x3 convs, 64-64-128).
    output_stride : 8, 16 or 32.
    multi_grid : unit rates of the last stage's blocks (e.g. ``(1, 2, 4)``), multiplied by the
        stage's dilation; cycled if the stage has more blocks.
    dilation_rule : ``"uniform"`` or ``"gluoncv"`` (see the module docstring).
    norm_layer, norm_kwargs : the normalisation layer and its arguments.

    Forward: ``x`` (N, 3, H, W) -> ``(low_level, stage3, features)``: layer1's output
    (N, 64|256, ceil(H/4), ceil(W/4)), layer3's (N, 256|1024, ceil(H/s3), ceil(W/s3)) with
    s3 = min(16, os), and layer4's (N, 512|2048, ceil(H/os), ceil(W/os)).
    """

    def __init__(self, depth: int = 50, variant: str = "v1b", output_stride: int = 16,
                 multi_grid: Optional[Sequence[int]] = None, dilation_rule: str = "uniform",
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"ResNet variant must be one of {tuple(VARIANTS)}, got {variant!r}")
        if depth not in VARIANTS[variant]:
            raise ValueError(f"ResNet-{variant} depth must be one of {VARIANTS[variant]}, got {depth}")
        if dilation_rule not in DILATION_RULES:
            raise ValueError(f"dilation_rule must be one of {DILATION_RULES}, got {dilation_rule!r}")
        block_type, layers = RESNET_V1B_SPECS[depth]
        block = BasicBlockV1b if block_type == "basic" else BottleneckV1b
        strides, dilations = stage_strides_and_dilations(output_stride)  # refuses an unsupported one
        norm_kwargs = dict(norm_kwargs or {})
        self.depth, self.variant, self.output_stride = depth, variant, output_stride
        self.dilation_rule = dilation_rule
        self.multi_grid = tuple(multi_grid) if multi_grid else (1,)
        widths = [w * block.expansion for w in STAGE_WIDTHS]
        self.low_level_channels, self.stage3_channels, self.out_channels = widths[0], widths[2], widths[3]
        stem_width = 64
        with self.name_scope():
            if variant == "v1b":
                self.conv1 = nn.Conv2D(stem_width, 7, 2, 3, use_bias=False, in_channels=3)
            else:
                # indices 0-6 as in gluoncv (ReLUs included), so the names are conv1.0, conv1.1, conv1.3 ...
                self.conv1 = nn.HybridSequential(prefix="conv1_")
                with self.conv1.name_scope():
                    self.conv1.add(nn.Conv2D(stem_width, 3, 2, 1, use_bias=False, in_channels=3),
                                   norm_layer(in_channels=stem_width, **norm_kwargs), nn.Activation("relu"),
                                   nn.Conv2D(stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                                   norm_layer(in_channels=stem_width, **norm_kwargs), nn.Activation("relu"),
                                   nn.Conv2D(stem_width * 2, 3, 1, 1, use_bias=False, in_channels=stem_width))
                stem_width *= 2
            self.bn1 = norm_layer(in_channels=stem_width, **norm_kwargs)
            self.maxpool = nn.MaxPool2D(3, 2, 1)
            in_channels = stem_width
            for i, num_blocks in enumerate(layers):
                stage = nn.HybridSequential(prefix=f"layers{i + 1}_")
                with stage.name_scope():
                    for b in range(num_blocks):
                        unit_rate = self.multi_grid[b % len(self.multi_grid)] if i == 3 else 1
                        stage.add(block(STAGE_WIDTHS[i], strides[i] if b == 0 else 1,
                                        block_dilations(dilations[i], b, unit_rate, dilation_rule),
                                        downsample=(b == 0 and (strides[i] != 1 or in_channels != widths[i])),
                                        in_channels=in_channels if b == 0 else widths[i],
                                        norm_layer=norm_layer, norm_kwargs=norm_kwargs, prefix=""))
                setattr(self, f"layer{i + 1}", stage)
                in_channels = widths[i]

    @property
    def zoo_name(self) -> str:
        return f"resnet{self.depth}_{self.variant}"

    def zoo_network(self):
        from gluoncv.model_zoo import get_model  # only for legacy-named files: gluoncv imports slowly

        return get_model(self.zoo_name)

    def hybrid_forward(self, F, x):
        x = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        low_level = self.layer1(self.maxpool(x))
        stage3 = self.layer3(self.layer2(low_level))
        return low_level, stage3, self.layer4(stage3)
