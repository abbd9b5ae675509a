"""The networks the benchmarks compare: ours (deeplab_gluon) and gluoncv's DeepLabV3, built alike.

Both are built without downloading anything (random weights; speed does not depend on their values),
initialised with the same He initialiser, with 21 classes and no auxiliary head, and split into a
backbone part and a head part for the where-does-the-time-go measurements.

gluoncv's DeepLabV3 supports one output stride only: ``SegBaseModel`` always builds its backbone with
``dilated=True`` (``resnetv1b``: stride 8, dilations 2 and 4 in the last two stages) and its head
hard-codes the ASPP rates (12, 24, 36) and an image-pooling size of ``crop_size // 8``. So every
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
    from deeplab_gluon.models import get_deeplab

    return get_deeplab(f"resnet{depth}_v2", head, output_stride, num_classes=NUM_CLASSES, ctx=ctx or mx.cpu(),
                       **kwargs)


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


def gluoncv_feature_size(net, input_size: Tuple[int, int]) -> Tuple[int, int]:
    """(h, w) of gluoncv's last backbone stage for an input of ``input_size``, by shape inference."""
    _, features = net.base_forward(mx.sym.var("data"))
    _, (shape,), _ = features.infer_shape(data=(1, 3) + tuple(input_size))
    return int(shape[2]), int(shape[3])


class BackbonePart(HybridBlock):
    """The backbone of a network alone: image -> last-stage features."""

    def __init__(self, net, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.net = net

    def hybrid_forward(self, F, x):
        if self.kind == "ours":
            return self.net.backbone(x)[1]
        return self.net.base_forward(x)[1]


class HeadPart(HybridBlock):
    """The head of a network alone, with the final upsampling: features -> logits at the input size.

    ``like`` is any array of the input's spatial size (ours resizes "like" the input; gluoncv to
    its baked-in size and ignores it).
    """

    def __init__(self, net, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.net = net

    def hybrid_forward(self, F, features, like):
        if self.kind == "ours":
            return F.contrib.BilinearResize2D(self.net.head(features), like, mode="like")
        return F.contrib.BilinearResize2D(self.net.head(features), **self.net._up_kwargs)
