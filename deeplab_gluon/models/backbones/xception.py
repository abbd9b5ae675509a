"""Aligned Xception-65 backbone, parameter-compatible with gluoncv's ``xception`` (``Xception65``).

The DeepLabV3+ paper's modified Xception (section 4.1): entry flow, 16 middle-flow blocks and
an exit flow of separable convs, each depthwise 3x3 -> BN -> pointwise 1x1. The layer tree
mirrors ``gluoncv.model_zoo.xception.Xception65`` attribute and index for index (``block1.rep.0``,
``midflow.3.rep.4.pointwise.weight`` ...), so its ImageNet ``.params`` file loads unchanged.

Output stride as gluoncv (and TF DeepLab): the block that would stride past ``output_stride``
keeps the resolution and the rate, the layers after it dilate by the skipped stride
(OS16: exit flow (1, 2); OS8: middle flow 2, exit flow (2, 4)). ``multi_grid`` multiplies the
rates of the exit flow's last three separable convs, TF DeepLab's ``exit_flow/block2``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from mxnet.gluon import HybridBlock, nn

from .base import Backbone, check_output_stride

MIDDLE_BLOCKS = 16
MIDDLE_CHANNELS = 728


class SeparableConv2D(HybridBlock):
    """Depthwise 3x3 (strided, dilated) -> BN -> pointwise 1x1, no activation in between.

    gluoncv pads explicitly ("fixed padding") before an unpadded conv; for a 3x3 kernel that
    padding is ``dilation`` on every side, so the conv pads itself here: same result, no copy.
    """

    def __init__(self, in_channels, channels, stride=1, dilation=1, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = nn.Conv2D(in_channels, 3, stride, dilation, dilation=dilation, groups=in_channels,
                                   use_bias=False, in_channels=in_channels)
            self.bn = norm_layer(in_channels=in_channels, **(norm_kwargs or {}))
            self.pointwise = nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels)

    def hybrid_forward(self, F, x):
        return self.pointwise(self.bn(self.conv1(x)))


class XceptionBlock(HybridBlock):
    """A residual unit of separable convs, each ``ReLU -> SeparableConv2D -> BN``.

    ``convs`` lists (in, out, stride, dilation) per separable conv. The first ReLU is left out
    when ``start_with_relu`` is False. The ReLUs hold places in ``rep`` as in gluoncv, so the
    indices (hence the parameter names) match. The shortcut is a strided 1x1 conv + BN when
    the shape changes, else the identity.
    """

    def __init__(self, convs: Sequence[Tuple[int, int, int, int]], start_with_relu=True,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        in_channels, channels = convs[0][0], convs[-1][1]
        stride = max(conv[2] for conv in convs)
        with self.name_scope():
            if in_channels != channels or stride != 1:
                self.skip = nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
                self.skipbn = norm_layer(in_channels=channels, **norm_kwargs)
            else:
                self.skip = None
            self.rep = nn.HybridSequential(prefix="")
            for index, (cin, cout, conv_stride, dilation) in enumerate(convs):
                if index > 0 or start_with_relu:
                    self.rep.add(nn.Activation("relu"))
                self.rep.add(SeparableConv2D(cin, cout, conv_stride, dilation, norm_layer, norm_kwargs))
                self.rep.add(norm_layer(in_channels=cout, **norm_kwargs))

    def hybrid_forward(self, F, x):
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + shortcut


# output stride -> (entry block3 stride, middle rate, exit block20 stride, exit rates (block20, conv3-5))
FLOW_STRIDES_AND_RATES = {32: (2, 1, 2, (1, 1)), 16: (2, 1, 1, (1, 2)), 8: (1, 2, 1, (2, 4))}


class Xception65(Backbone):
    """Aligned Xception-65 feature extractor with a chosen output stride.

    Parameters
    ----------
    output_stride : 8, 16 or 32.
    multi_grid : unit rates of the exit flow's conv3, conv4, conv5 (e.g. ``(1, 2, 4)``), cycled.
    norm_layer, norm_kwargs : the normalisation layer and its arguments (gluoncv's ``bn2``
        ignores ``norm_kwargs``; here every layer gets them).

    Forward: ``x`` (N, 3, H, W) -> ``(low_level, stage3, features)``: entry block1 after ReLU
    (N, 128, ceil(H/4), ceil(W/4)), the decoder input of gluoncv's DeepLabV3+; the middle flow's
    output (N, 728, ceil(H/s), ceil(W/s)) with s = min(16, os), gluoncv's auxiliary-head input,
    standing for ResNet's stage 3; and the exit flow's (N, 2048, ceil(H/os), ceil(W/os)).
    """

    low_level_channels, stage3_channels, out_channels = 128, MIDDLE_CHANNELS, 2048

    def __init__(self, output_stride: int = 16, multi_grid: Optional[Sequence[int]] = None,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        check_output_stride(output_stride, self.OUTPUT_STRIDES)
        self.output_stride = output_stride
        self.multi_grid = tuple(multi_grid) if multi_grid else (1,)
        entry_stride, middle_rate, exit_stride, (exit_rate, last_rate) = FLOW_STRIDES_AND_RATES[output_stride]
        norm_kwargs = dict(norm_kwargs or {})
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            # entry flow: two plain convs, then blocks to 128 (stride 4), 256 (8), 728 (16)
            self.conv1 = nn.Conv2D(32, 3, 2, 1, use_bias=False, in_channels=3)
            self.bn1 = norm_layer(in_channels=32, **norm_kwargs)
            self.conv2 = nn.Conv2D(64, 3, 1, 1, use_bias=False, in_channels=32)
            self.bn2 = norm_layer(in_channels=64, **norm_kwargs)
            self.block1 = XceptionBlock([(64, 128, 1, 1), (128, 128, 1, 1), (128, 128, 2, 1)],
                                        start_with_relu=False, **norm)
            self.block2 = XceptionBlock([(128, 256, 1, 1), (256, 256, 1, 1), (256, 256, 2, 1)],
                                        start_with_relu=False, **norm)
            self.block3 = XceptionBlock([(256, 728, 1, 1), (728, 728, 1, 1), (728, 728, entry_stride, 1)], **norm)
            self.midflow = nn.HybridSequential(prefix="midflow_")
            with self.midflow.name_scope():
                for _ in range(MIDDLE_BLOCKS):
                    self.midflow.add(XceptionBlock([(728, 728, 1, middle_rate)] * 3, **norm))
            # exit flow; the strided conv of block20 keeps rate 1 at OS32, as in gluoncv
            self.block20 = XceptionBlock([(728, 728, 1, exit_rate), (728, 1024, 1, exit_rate),
                                          (1024, 1024, exit_stride, exit_rate if exit_stride == 1 else 1)], **norm)
            rates = [last_rate * self.multi_grid[i % len(self.multi_grid)] for i in range(3)]
            self.conv3 = SeparableConv2D(1024, 1536, 1, rates[0], **norm)
            self.bn3 = norm_layer(in_channels=1536, **norm_kwargs)
            self.conv4 = SeparableConv2D(1536, 1536, 1, rates[1], **norm)
            self.bn4 = norm_layer(in_channels=1536, **norm_kwargs)
            self.conv5 = SeparableConv2D(1536, 2048, 1, rates[2], **norm)
            self.bn5 = norm_layer(in_channels=2048, **norm_kwargs)

    @property
    def zoo_name(self) -> str:
        return "xception65 (gluoncv 'xception')"

    def zoo_network(self):
        from gluoncv.model_zoo import get_model

        return get_model("xception")

    def hybrid_forward(self, F, x):
        x = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        x = F.Activation(self.bn2(self.conv2(x)), act_type="relu")
        low_level = F.Activation(self.block1(x), act_type="relu")  # gluoncv's "add relu here"
        stage3 = self.midflow(self.block3(self.block2(low_level)))
        x = F.Activation(self.block20(stage3), act_type="relu")
        for conv, bn in ((self.conv3, self.bn3), (self.conv4, self.bn4), (self.conv5, self.bn5)):
            x = F.Activation(bn(conv(x)), act_type="relu")
        return low_level, stage3, x
