"""The networks the benchmarks compare: ours (deeplab_gluon) and gluoncv's DeepLabV3 / DeepLabV3+, built alike.

All are built without downloading anything (random weights; speed does not depend on their values),
with 21 classes and no auxiliary head, and split into a backbone part and a head part for the
where-does-the-time-go measurements.

gluoncv 0.10.5 has DeepLabV3 on ResNet-v1b/v1s (``get_deeplab``: ``resnet18``/``34`` are v1b,
``50``/``101``/``152`` v1s) and DeepLabV3+ on Xception-65 only (``get_deeplab_plus``, backbone
``'xception'``); no DeepLab on MobileNetV2, no Vortex Pooling, no DeepLabV3+ on a ResNet. Both
support one output stride only: ``SegBaseModel`` always builds its backbone with ``dilated=True``
(stride 8, dilations 2 and 4 in the last two stages), ``DeepLabV3Plus`` its Xception at stride 8,
and the heads hard-code the ASPP rates (12, 24, 36) and the sizes they resize to. So every
comparison with gluoncv is at output stride 8.
"""
from __future__ import annotations

import warnings
from typing import Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock

NUM_CLASSES = 21  # PASCAL VOC
GLUONCV_OUTPUT_STRIDES = (8,)


def he_init() -> mx.init.Initializer:
    """The initialiser ``get_deeplab`` uses; applied to both networks so activations have alike scales."""
    return mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)


def build_ours(depth: int, head: str, output_stride: int, ctx=None, **kwargs) -> HybridBlock:
    """DeepLabV3 ResNet-``depth``-v2 with the ``head`` ("aspp" or "vortex") at ``output_stride``."""
    return build_model_named(f"resnet{depth}_v2", head, output_stride, ctx=ctx, **kwargs)


def build_model_named(backbone: str, head: str, output_stride: int, decoder: bool = False, ctx=None,
                      **kwargs) -> HybridBlock:
    """Our DeepLabV3 (``decoder=True``: DeepLabV3+) on any registry ``backbone`` (``resnet50_v1s``,
    ``mobilenetv2_1.0``, ``xception65``...), with our own initialisation."""
    from deeplab_gluon.models import get_deeplab

    return get_deeplab(backbone, head, output_stride, num_classes=NUM_CLASSES, decoder=decoder,
                       ctx=ctx or mx.cpu(), **kwargs)


def build_gluoncv(depth: int, input_size: Tuple[int, int], ctx=None) -> HybridBlock:
    """gluoncv's DeepLabV3 ResNet-``depth`` (v1s backbone, output stride 8) sized for ``input_size``.

    gluoncv bakes the input size into the graph: the final upsampling goes to ``crop_size`` and the
    image-pooling branch of ASPP is broadcast back to ``crop_size // 8``. That second size is wrong
    whenever the size is not a multiple of 8 (513 -> 64, while the features are ceil(513 / 8) = 65 and
    the concatenation fails), so it is set to the real feature size read from the graph.
    """
    from gluoncv.model_zoo import get_deeplab as gluoncv_deeplab

    height, width = input_size
    ctx = ctx or mx.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gluoncv_deeplab(dataset="pascal_voc", backbone=f"resnet{depth}", pretrained=False,
                              pretrained_base=False, aux=False, ctx=ctx, crop_size=height, base_size=height,
                              height=height, width=width)
        net.collect_params().initialize(he_init(), ctx=ctx, force_reinit=True)
    feature_h, feature_w = gluoncv_feature_size(net, input_size)
    net.head.aspp.concurent[-1]._up_kwargs = {"height": feature_h, "width": feature_w}
    # Several of gluoncv's layers omit in_channels, so their weights only get shapes at the first
    # forward; do it now so parts of the network (the backbone alone) can run on their own.
    net(mx.nd.zeros((1, 3, height, width), ctx=ctx))
    return net


def build_gluoncv_plus(input_size: Tuple[int, int], ctx=None) -> HybridBlock:
    """gluoncv's DeepLabV3+ (Xception-65, output stride 8, ASPP, decoder) sized for ``input_size``.

    As :func:`build_gluoncv`: gluoncv bakes sizes into the graph, from ``crop_size`` rounded down
    (the decoder resizes the ASPP output to ``crop_size // 4``, image pooling to ``crop_size // 8``),
    which do not match the real feature maps for a size that is not a multiple of 8 (513: 128 and 64
    against 129 and 65), so both are set to the sizes read from the graph. Its decoder differs from
    ours in one layer: the low-level projection is a 3x3 conv (ours, as the paper, 1x1).
    """
    from gluoncv.model_zoo.deeplabv3_plus import get_deeplab_plus

    height, width = input_size
    ctx = ctx or mx.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = get_deeplab_plus(dataset="pascal_voc", backbone="xception", pretrained=False, pretrained_base=False,
                               aux=False, ctx=ctx, crop_size=height, base_size=height, height=height, width=width)
        net.collect_params().initialize(he_init(), ctx=ctx, force_reinit=True)
    low_level, _, features = net.base_forward(mx.sym.var("data"))
    (low_h, low_w), (feature_h, feature_w) = (_spatial_size(sym, input_size) for sym in (low_level, features))
    net.head._up_kwargs = {"height": low_h, "width": low_w}
    net.head.aspp.concurent[-1]._up_kwargs = {"height": feature_h, "width": feature_w}
    net(mx.nd.zeros((1, 3, height, width), ctx=ctx))  # deferred shapes, as in build_gluoncv
    return net


def gluoncv_feature_size(net, input_size: Tuple[int, int]) -> Tuple[int, int]:
    """(h, w) of gluoncv's last backbone stage for an input of ``input_size``, by shape inference."""
    _, features = net.base_forward(mx.sym.var("data"))
    return _spatial_size(features, input_size)


def _spatial_size(sym, input_size: Tuple[int, int]) -> Tuple[int, int]:
    _, (shape,), _ = sym.infer_shape(data=(1, 3) + tuple(input_size))
    return int(shape[2]), int(shape[3])


def has_decoder(net, kind: str) -> bool:
    """Whether ``net`` (ours or gluoncv's) is a DeepLabV3+, whose head also takes stride-4 features."""
    if kind == "ours":
        return net.decoder is not None
    return hasattr(net.head, "c1_block")  # gluoncv's DeepLabV3Plus head


class BackbonePart(HybridBlock):
    """The backbone of a network alone: image -> what the head takes.

    That is the last stage's features, or ``(low_level, features)`` for a DeepLabV3+ (the decoder
    also takes the stride-4 features). Our backbones return ``(low_level, stage3, features)``.
    """

    def __init__(self, net, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.decoder = has_decoder(net, kind)
        self.net = net

    def hybrid_forward(self, F, x):
        if self.kind == "ours":
            low_level, _, features = self.net.backbone(x)
        else:
            outputs = self.net.base_forward(x)  # (c3, c4), DeepLabV3Plus: (c1, c3, c4)
            low_level, features = outputs[0], outputs[-1]
        return (low_level, features) if self.decoder else features


class HeadPart(HybridBlock):
    """The head (and decoder) of a network alone, with the final upsampling: what
    :class:`BackbonePart` gives, then ``like`` -> logits at the input size.

    ``like`` is any array of the input's spatial size (ours resizes "like" the input; gluoncv to
    its baked-in size and ignores it).
    """

    def __init__(self, net, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.decoder = has_decoder(net, kind)
        self.net = net

    def hybrid_forward(self, F, *inputs):
        *features, like = inputs
        low_level, features = features if self.decoder else (None, features[0])
        if self.kind == "ours":
            out = self.net.head(features)
            if self.decoder:
                out = self.net.decoder(out, low_level)
            return F.contrib.BilinearResize2D(out, like, mode="like")
        out = self.net.head(features, low_level) if self.decoder else self.net.head(features)
        return F.contrib.BilinearResize2D(out, **self.net._up_kwargs)
