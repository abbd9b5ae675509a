"""Context heads on top of the backbone: ASPP (DeepLabV3), Vortex Pooling, and the FCN auxiliary head.

Every head maps features (N, C_in, h, w) to logits (N, num_classes, h, w); the network
upsamples them to the input size. Built with ``num_classes=None``, a context head stops at its
fused 256-channel features (N, 256, h, w) instead, for the DeepLabV3+ decoder to classify.

A context head ends in one of two fusions of its concatenated branches (``variant``):

- ``"deeplab"``: 1x1 conv-BN-ReLU to 256 -> dropout -> 1x1 classifier (the DeepLabV3 paper's);
- ``"gluoncv"``: gluoncv's ``_DeepLabHead``: 1x1 conv-BN-ReLU -> dropout 0.5 -> 3x3 conv-BN-ReLU
  -> dropout -> 1x1 classifier, so gluoncv's trained DeepLabV3 weights load and give its outputs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

HEAD_CHANNELS = 256
HEAD_VARIANTS = ("deeplab", "gluoncv")
# gluoncv's _ASPP.project ends in Dropout(0.5), before its _DeepLabHead's 3x3 conv
GLUONCV_PROJECT_DROPOUT = 0.5

# Atrous rates per output stride. ASPP: the DeepLabV3 paper's (6, 12, 18) at OS16, doubled at OS8.
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
# Vortex: the paper's (3, 9, 27) at OS16; doubled at OS8 so a model trained at OS16 sees the
# same context when evaluated at OS8. A rate of 1.5 does not exist, so OS32 keeps the OS16 rates.
VORTEX_RATES = {8: (6, 18, 54), 16: (3, 9, 27), 32: (3, 9, 27)}


class ConvBNReLU(HybridBlock):
    """Conv (no bias) -> norm -> ReLU; the unit every head branch is made of."""

    def __init__(self, in_channels, channels, kernel_size=1, dilation=1,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel_size, padding=dilation * (kernel_size // 2),
                                  dilation=dilation, use_bias=False, in_channels=in_channels)
            self.bn = norm_layer(in_channels=channels, **(norm_kwargs or {}))

    def hybrid_forward(self, F, x):
        return F.Activation(self.bn(self.conv(x)), act_type="relu")


class SeparableConvBNReLU(HybridBlock):
    """Depthwise 3x3 conv (dilated) -> norm -> ReLU -> pointwise 1x1 conv -> norm -> ReLU.

    TF DeepLab's ``aspp_with_separable_conv`` / ``decoder_use_separable_conv`` unit: (N, C_in, h, w) ->
    (N, channels, h, w) at ``9 * C_in + C_in * channels`` multiply-adds per position instead of the dense
    3x3's ``9 * C_in * channels``. Block names ``depthwise``/``pointwise`` let int8 find the depthwise conv.
    """

    def __init__(self, in_channels, channels, dilation=1, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.depthwise = nn.Conv2D(in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels,
                                       use_bias=False, in_channels=in_channels, prefix="depthwise_")
            self.depthwise_bn = norm_layer(in_channels=in_channels, **(norm_kwargs or {}))
            self.pointwise = ConvBNReLU(in_channels, channels, 1, norm_layer=norm_layer, norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.pointwise(F.Activation(self.depthwise_bn(self.depthwise(x)), act_type="relu"))


def conv3x3_bn_relu(in_channels, channels, dilation=1, separable=False, norm_layer=nn.BatchNorm,
                    norm_kwargs=None) -> HybridBlock:
    """A 3x3 (dilated) conv-BN-ReLU of a head or decoder: dense, or ``separable`` (:class:`SeparableConvBNReLU`)."""
    norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    if separable:
        return SeparableConvBNReLU(in_channels, channels, dilation, **norm)
    return ConvBNReLU(in_channels, channels, 3, dilation=dilation, **norm)


class ImagePooling(HybridBlock):
    """Image-level branch: global average pool -> 1x1 conv -> norm -> ReLU -> back to h x w.

    Upsampling a 1x1 map bilinearly is a broadcast, so ``broadcast_like`` does it exactly
    and keeps the graph free of fixed sizes.
    """

    def __init__(self, in_channels, channels, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.project = ConvBNReLU(in_channels, channels, 1, norm_layer=norm_layer, norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x):
        pooled = self.project(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        return F.broadcast_like(pooled, x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class Classifier(HybridBlock):
    """Conv -> norm -> ReLU -> dropout -> 1x1 classifier: the end of every head.

    The context heads fuse their concatenated branches with a 1x1 conv to 256 channels;
    the auxiliary FCN head uses a 3x3 conv to ``in_channels // 4``. ``num_classes=None`` stops
    after the ReLU (no dropout, no classifier): the decoder that follows has its own.
    """

    def __init__(self, in_channels, num_classes: Optional[int], mid_channels=HEAD_CHANNELS, kernel_size=1,
                 dropout=0.1, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.project = ConvBNReLU(in_channels, mid_channels, kernel_size, norm_layer=norm_layer,
                                      norm_kwargs=norm_kwargs)
            classify = num_classes is not None
            self.dropout = nn.Dropout(dropout) if dropout > 0 and classify else None
            # small initial logits: a He-initialised classifier starts with losses around 10
            self.classifier = (nn.Conv2D(num_classes, 1, in_channels=mid_channels,
                                         weight_initializer=mx.init.Normal(0.01)) if classify else None)

    def hybrid_forward(self, F, x):
        x = self.project(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x if self.classifier is None else self.classifier(x)


class GluonCVFusion(HybridBlock):
    """gluoncv's ending of a DeepLabV3 head: (N, C_in, h, w) -> logits (N, num_classes, h, w).

    1x1 conv-BN-ReLU to 256 (gluoncv's ``_ASPP.project``) -> dropout 0.5 -> 3x3 conv-BN-ReLU ->
    dropout -> 1x1 classifier (its ``_DeepLabHead.block``). ``num_classes=None`` stops after the
    3x3 conv's ReLU: 256-channel features.
    """

    def __init__(self, in_channels, num_classes: Optional[int], dropout=0.1, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.project = ConvBNReLU(in_channels, HEAD_CHANNELS, 1, **norm)
            self.dropout = nn.Dropout(GLUONCV_PROJECT_DROPOUT)
            self.block = Classifier(HEAD_CHANNELS, num_classes, kernel_size=3, dropout=dropout, **norm)

    def hybrid_forward(self, F, x):
        return self.block(self.dropout(self.project(x)))


def head_fusion(in_channels: int, num_classes: Optional[int], variant: str = "deeplab", dropout: float = 0.1,
                norm_layer=nn.BatchNorm, norm_kwargs=None) -> HybridBlock:
    """The block that fuses a context head's concatenated branches (see the module docstring)."""
    if variant not in HEAD_VARIANTS:
        raise ValueError(f"head variant must be one of {', '.join(HEAD_VARIANTS)}, got {variant!r}")
    kind = Classifier if variant == "deeplab" else GluonCVFusion
    return kind(in_channels, num_classes, dropout=dropout, norm_layer=norm_layer, norm_kwargs=norm_kwargs)


class ASPPHead(HybridBlock):
    """Atrous Spatial Pyramid Pooling with image pooling (DeepLabV3, section 3.3).

    Branches: 1x1 conv; three 3x3 atrous convs at ``rates``; image pooling. Each gives
    256 channels; they are concatenated (1280) and fused by :func:`head_fusion` of ``variant``.
    gluoncv's ``_ASPP`` has the same branches (its rates are 12, 24, 36 at its fixed output
    stride 8, as ``ASPP_RATES[8]``), but upsamples its pooling branch to a size fixed at
    construction; :class:`ImagePooling` broadcasts to the feature map's size at run time.

    ``separable``: each atrous branch is a :class:`SeparableConvBNReLU` (TF's ``aspp_with_separable_conv``).
    ``rates=()``: the 1x1 and image-pooling branches only, TF DeepLab's MobileNetV2 head (the ``lite`` head).
    """

    def __init__(self, in_channels: int, num_classes: Optional[int], rates: Sequence[int] = (6, 12, 18),
                 dropout: float = 0.1, variant: str = "deeplab", separable: bool = False, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.rates = tuple(rates)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.branches = nn.HybridSequential(prefix="")  # container only; forward calls each
            self.branches.add(ConvBNReLU(in_channels, HEAD_CHANNELS, 1, **norm))
            for rate in self.rates:
                self.branches.add(conv3x3_bn_relu(in_channels, HEAD_CHANNELS, rate, separable, **norm))
            self.branches.add(ImagePooling(in_channels, HEAD_CHANNELS, **norm))
            self.fusion = head_fusion(HEAD_CHANNELS * len(self.branches), num_classes, variant, dropout, **norm)

    def hybrid_forward(self, F, x):
        return self.fusion(F.concat(*[branch(x) for branch in self.branches], dim=1))


# oneDNN's JIT average-pooling kernel (MXNet's MKL-DNN backend) pads at most its unroll width on the
# left: 24 columns forward / 12 backward with AVX-512, 12 / 6 with AVX2 (jit_uni_pool_kernel::init_conf).
# Wider padding falls back to a reference kernel, 10-200x slower. Top padding has no such limit.
JIT_SAFE_LEFT_PADDING = 6


class BoxAverage(HybridBlock):
    """r x r average pooling, stride 1, same size out, computed as (r x 1) then (1 x r).

    A box filter is separable, so the two passes give exactly the r x r mean at r + r adds
    per value instead of r * r. Padding is excluded from the mean, so border values are the
    mean of the pixels that exist rather than being pulled towards zero.

    A horizontal window that pads more than ``JIT_SAFE_LEFT_PADDING`` columns would hit MKL-DNN's
    slow fallback kernel (a 1 x 55 window, Vortex at output stride 8, took ~20 s instead of
    ~0.02 s; the backward of 1 x 27, every output stride 16 training step, fell back too), so
    for those the horizontal pass pools along the height of the transposed map instead. Smaller
    windows pool directly: the two transposes would cost more than they save.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        if size % 2 == 0:
            raise ValueError(f"pooling size must be odd to keep the window centred, got {size}")
        self.size = size

    def _average(self, F, x, vertical: bool):
        r, p = self.size, self.size // 2
        kernel, pad = ((r, 1), (p, 0)) if vertical else ((1, r), (0, p))
        return F.Pooling(x, kernel=kernel, stride=(1, 1), pad=pad, pool_type="avg", count_include_pad=False)

    def hybrid_forward(self, F, x):
        x = self._average(F, x, vertical=True)
        if self.size // 2 <= JIT_SAFE_LEFT_PADDING:
            return self._average(F, x, vertical=False)
        across = self._average(F, F.transpose(x, axes=(0, 1, 3, 2)), vertical=True)
        return F.transpose(across, axes=(0, 1, 3, 2))


class DilatedBoxAverage(HybridBlock):
    """3 x 3 average pooling whose taps are ``dilation`` apart (MXNet's Pooling has no dilation).

    Applied to a (d x d)-box-averaged map it gives the (3d x 3d) box average, which is how
    Vortex module B reuses the smaller pooling for the larger one. Taps outside the map are
    left out of the mean, as in :class:`BoxAverage`.
    """

    def __init__(self, dilation: int, **kwargs):
        super().__init__(**kwargs)
        self.dilation = dilation

    def _average_along(self, F, x, axis):
        d = self.dilation
        pad = (0, 0, 0, 0, d, d, 0, 0) if axis == 2 else (0, 0, 0, 0, 0, 0, d, d)
        ones = F.ones_like(F.slice_axis(x, axis=1, begin=0, end=1))
        total, count = F.pad(x, mode="constant", pad_width=pad), F.pad(ones, mode="constant", pad_width=pad)
        taps = [(0, -2 * d), (d, -d), (2 * d, None)]
        summed = F.add_n(*[F.slice_axis(total, axis=axis, begin=b, end=e) for b, e in taps])
        counted = F.add_n(*[F.slice_axis(count, axis=axis, begin=b, end=e) for b, e in taps])
        return F.broadcast_div(summed, counted)

    def hybrid_forward(self, F, x):
        return self._average_along(F, self._average_along(F, x, 2), 3)


class VortexHead(HybridBlock):
    """Vortex Pooling (Xie, Zhou, Wu 2018, arXiv:1804.06242).

    Branches: image pooling; 1x1 conv; and for each rate r: r x r average pooling followed
    by a 3x3 conv with dilation r, so each tap of the dilated conv sees the mean of the r x r
    region around it instead of a single pixel. Fusion as in ASPP.

    ``module="A"`` pools each branch from the features independently (the paper's module A);
    ``module="B"`` cascades the poolings (3x3 box, then 3x3 taps 3 apart = 9x9 box, then taps
    9 apart = 27x27 box), sharing work between branches; it needs each rate 3x the previous.
    Even rates pool over r + 1 so the window stays centred. The fusion is :func:`head_fusion` of ``variant``.
    ``separable``: each atrous conv is a :class:`SeparableConvBNReLU`.
    """

    def __init__(self, in_channels: int, num_classes: Optional[int], rates: Sequence[int] = (3, 9, 27),
                 module: str = "A", dropout: float = 0.1, variant: str = "deeplab", separable: bool = False,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.rates, self.module = tuple(rates), module.upper()
        if self.module not in ("A", "B"):
            raise ValueError(f"Vortex module must be 'A' or 'B', got {module!r}")
        if self.module == "B" and any(b != 3 * a for a, b in zip(self.rates, self.rates[1:])):
            raise ValueError(f"Vortex module B needs each rate to be 3x the previous, got {self.rates}")
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.image_pooling = ImagePooling(in_channels, HEAD_CHANNELS, **norm)
            self.conv1x1 = ConvBNReLU(in_channels, HEAD_CHANNELS, 1, **norm)
            self.pools = nn.HybridSequential(prefix="")
            # A: one box per rate; B: the first box, then each larger one from the previous
            for rate in self.rates if self.module == "A" else self.rates[:1]:
                self.pools.add(BoxAverage(rate if rate % 2 else rate + 1))
            for previous in self.rates[:-1] if self.module == "B" else ():
                self.pools.add(DilatedBoxAverage(previous))
            self.atrous = nn.HybridSequential(prefix="")
            for rate in self.rates:
                self.atrous.add(conv3x3_bn_relu(in_channels, HEAD_CHANNELS, rate, separable, **norm))
            self.fusion = head_fusion(HEAD_CHANNELS * (2 + len(self.rates)), num_classes, variant, dropout, **norm)

    def hybrid_forward(self, F, x):
        outputs = [self.image_pooling(x), self.conv1x1(x)]
        pooled = x
        for pool, conv in zip(self.pools, self.atrous):
            pooled = pool(x if self.module == "A" else pooled)
            outputs.append(conv(pooled))
        return self.fusion(F.concat(*outputs, dim=1))


def FCNHead(in_channels: int, num_classes: int, dropout: float = 0.1, norm_layer=nn.BatchNorm,
            norm_kwargs=None, **kwargs) -> Classifier:
    """Auxiliary head on stage 3 (as in FCN / PSPNet): 3x3 conv to in_channels/4 -> classifier."""
    return Classifier(in_channels, num_classes, mid_channels=in_channels // 4, kernel_size=3, dropout=dropout,
                      norm_layer=norm_layer, norm_kwargs=norm_kwargs, **kwargs)
