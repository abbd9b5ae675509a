"""The DeepLabV3+ decoder (Chen et al. 2018, section 3.1): refine the head's output with stride-4 features.

The context head's 256-channel features (stride 8 or 16) lose object boundaries; the
decoder upsamples them to the backbone's stride-4 features, which still have them, and
fuses the two before classifying.
"""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .heads import HEAD_CHANNELS, ConvBNReLU, conv3x3_bn_relu

# the paper's choice (Table 1): 48 low-level channels keep the 256 head channels dominant
LOW_LEVEL_PROJECTION = 48


class Decoder(HybridBlock):
    """Low-level projection, concatenation with the upsampled head features, two 3x3 convs, classifier.

    Parameters
    ----------
    low_level_channels : channels of the backbone's stride-4 features.
    num_classes : classifier outputs.
    in_channels : channels of the head's features (256).
    dropout : before the classifier, as in the heads' :class:`~deeplab_gluon.models.heads.Classifier`
        (the head's own dropout and classifier are not used when a decoder follows).
    separable : the two 3x3 convs as depthwise + pointwise (TF's ``decoder_use_separable_conv``).
    norm_layer, norm_kwargs : the normalisation layer and its arguments.

    Forward: ``head_features`` (N, in_channels, h, w) and ``low_level`` (N, low_level_channels,
    H4, W4) -> logits (N, num_classes, H4, W4). The upsampling takes its size from ``low_level``
    at run time (``BilinearResize2D(mode='like')``), so a hybridized decoder takes any size.
    """

    def __init__(self, low_level_channels: int, num_classes: int, in_channels: int = HEAD_CHANNELS,
                 dropout: float = 0.1, separable: bool = False, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.project = ConvBNReLU(low_level_channels, LOW_LEVEL_PROJECTION, 1, **norm)
            self.fuse = nn.HybridSequential(prefix="")
            self.fuse.add(conv3x3_bn_relu(in_channels + LOW_LEVEL_PROJECTION, HEAD_CHANNELS, 1, separable, **norm),
                          conv3x3_bn_relu(HEAD_CHANNELS, HEAD_CHANNELS, 1, separable, **norm))
            self.dropout = nn.Dropout(dropout) if dropout > 0 else None
            # small initial logits, as the heads' classifier
            self.classifier = nn.Conv2D(num_classes, 1, in_channels=HEAD_CHANNELS,
                                        weight_initializer=mx.init.Normal(0.01))

    def hybrid_forward(self, F, head_features, low_level):
        low_level = self.project(low_level)
        upsampled = F.contrib.BilinearResize2D(head_features, low_level, mode="like")
        x = self.fuse(F.concat(upsampled, low_level, dim=1))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)
