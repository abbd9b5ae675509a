"""Backbones: one file each, one registry here.

Every backbone is a ``HybridBlock`` built as ``Backbone(output_stride=16, multi_grid=None,
norm_layer=nn.BatchNorm, norm_kwargs=None)`` (the registry binds the variant, e.g. the depth) with

- ``OUTPUT_STRIDES``: the output strides it supports;
- forward ``x`` (N, 3, H, W) -> ``(low_level, stage3, features)``: stride-4 features for the
  DeepLabV3+ decoder, the auxiliary head's input, and the features at the output stride;
- ``low_level_channels``, ``stage3_channels``, ``out_channels``, ``output_stride``;
- the ResNet-v1b/v1s backbones also take ``dilation_rule`` (``"uniform"`` or ``"gluoncv"``);
- ``load_pretrained(path, ctx=None)``: the ImageNet model-zoo file users download, ``ValueError``
  naming what is missing or unexpected (and which zoo network the file looks like).

A new backbone is a new file here, subclassing :class:`base.Backbone` (which implements
``load_pretrained`` from the class's ``zoo_name``, ``zoo_network`` and ``CLASSIFIER_PARAMS``), and one
line in :data:`BACKBONES`.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Callable, Dict, Optional, Sequence

from mxnet.gluon import HybridBlock, nn

from .mobilenet_v2 import DilatedMobileNetV2
from .resnet_v1b import DILATION_RULES, VARIANTS as RESNET_V1B_VARIANTS, DilatedResNetV1b
from .resnet_v2 import RESNET_V2_SPECS, DilatedResNetV2
from .xception import Xception65

# canonical name (gluoncv's spelling) -> constructor taking (output_stride, multi_grid, norm_layer, norm_kwargs)
BACKBONES: Dict[str, Callable[..., HybridBlock]] = {
    **{f"resnet{depth}_v2": partial(DilatedResNetV2, depth) for depth in RESNET_V2_SPECS},
    **{f"resnet{depth}_{variant}": partial(DilatedResNetV1b, depth, variant)
       for variant, depths in RESNET_V1B_VARIANTS.items() for depth in depths},
    "mobilenetv2_1.0": partial(DilatedMobileNetV2, "gluoncv"),  # gluoncv's file; the Gluon zoo's: layout="gluon"
    "xception65": Xception65,
}
# backbones that can dilate by gluoncv's rule (``dilation_rule="gluoncv"``, see resnet_v1b); the others
# follow the uniform rule only
GLUONCV_DILATION_BACKBONES = tuple(name for name in BACKBONES if name.endswith(("_v1b", "_v1s")))
# other spellings users bring from gluoncv: its ImageNet Xception-65 is get_model("xception")
ALIASES = {"xception": "xception65"}

# The TF recipe's spelling (resnet_v2_101) and bare depths (101, resnet101) name ResNet-v2.
_RESNET_V2_ALIAS = re.compile(r"(?:resnet_?v2_?|resnet)?(\d+)(?:_?v2)?")


def canonical_backbone(name: str) -> str:
    """The registry name of a backbone: ``resnet_v2_101``, ``resnet101`` and ``101`` give ``resnet101_v2``,
    ``xception`` gives ``xception65``.

    Raises ``ValueError`` listing the known names for anything else.
    """
    text = str(name).strip().lower()
    if text in BACKBONES or text in ALIASES:
        return ALIASES.get(text, text)
    match = _RESNET_V2_ALIAS.fullmatch(text)
    if match and f"resnet{match.group(1)}_v2" in BACKBONES:
        return f"resnet{match.group(1)}_v2"
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def check_dilation_rule(backbone: str, dilation_rule: str) -> None:
    """Refuse a dilation rule the backbone (a canonical name) cannot follow, in one line (``ValueError``)."""
    if dilation_rule not in DILATION_RULES:
        raise ValueError(f"dilation_rule must be one of {', '.join(DILATION_RULES)}, got {dilation_rule!r}")
    if dilation_rule != "uniform" and backbone not in GLUONCV_DILATION_BACKBONES:
        raise ValueError(f"dilation_rule {dilation_rule!r} is gluoncv's dilated ResNet-v1b/v1s; "
                         f"{backbone} dilates uniformly only")


def get_backbone(name: str, output_stride: int = 16, multi_grid: Optional[Sequence[int]] = None,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 dilation_rule: str = "uniform") -> HybridBlock:
    """Build the backbone ``name`` (any spelling :func:`canonical_backbone` accepts).

    ``dilation_rule``: ``"uniform"``, or ``"gluoncv"`` for the ResNet-v1b/v1s backbones only.
    """
    name = canonical_backbone(name)
    check_dilation_rule(name, dilation_rule)
    rule = {"dilation_rule": dilation_rule} if name in GLUONCV_DILATION_BACKBONES else {}
    return BACKBONES[name](output_stride=output_stride, multi_grid=multi_grid, norm_layer=norm_layer,
                           norm_kwargs=norm_kwargs, **rule)
