"""DeepLab networks: a :class:`ModelSpec` describes one, :func:`build_model` builds it.

Backbones live in ``models/backbones/`` (one file each), the context heads in ``heads.py``, the
assembled network in ``deeplab.py``.
"""
from .deeplab import DeepLabV3, build_model, get_deeplab, get_model, list_backbones, list_models
from .heads import ASPPHead, FCNHead, VortexHead
from .spec import ModelSpec

__all__ = ["ModelSpec", "build_model", "get_deeplab", "get_model", "list_models", "list_backbones", "DeepLabV3",
           "ASPPHead", "VortexHead", "FCNHead"]
