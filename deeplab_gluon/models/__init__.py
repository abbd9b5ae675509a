"""DeepLabV3 networks: the dilated ResNet-v2 backbone, the heads, and the assembled model."""
from .deeplab import (HEADS, MODEL_REGISTRY, DeepLabV3, batchnorm_layers, build_model, freeze_batchnorm, get_deeplab,
                      get_model, head_rates, parse_backbone)
from .heads import ASPPHead, FCNHead, VortexHead
from .resnet_v2 import OUTPUT_STRIDES, RESNET_V2_SPECS, DilatedResNetV2, load_backbone_weights, read_zoo_params

__all__ = ["HEADS", "MODEL_REGISTRY", "DeepLabV3", "batchnorm_layers", "build_model", "freeze_batchnorm", "get_deeplab",
           "get_model", "head_rates", "parse_backbone", "ASPPHead", "FCNHead", "VortexHead", "OUTPUT_STRIDES",
           "RESNET_V2_SPECS", "DilatedResNetV2", "load_backbone_weights", "read_zoo_params"]
