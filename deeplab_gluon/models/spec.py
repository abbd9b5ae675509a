"""``ModelSpec``: the one description of a network, stored in every checkpoint and enough to rebuild it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Tuple

from .backbones import canonical_backbone, check_dilation_rule
from .heads import HEAD_VARIANTS

# "lite": image pooling + 1x1 branch, no atrous branches (TF DeepLab's MobileNetV2 head)
HEADS = ("aspp", "vortex", "lite")
OUTPUT_STRIDES = (8, 16, 32)
VORTEX_MODULES = ("A", "B")


@dataclass(frozen=True)
class ModelSpec:
    """What a DeepLab network is; :func:`~deeplab_gluon.models.build_model` builds it.

    Checkpoints store ``to_dict()``; ``from_dict`` reads those of every earlier version (fields added
    later take their defaults). The spelling of ``backbone`` is normalised (``resnet_v2_101`` ->
    ``resnet101_v2``), so two specs of the same network compare equal.
    """

    backbone: str = "resnet50_v2"
    head: str = "aspp"                  # "aspp", "vortex" or "lite" (no atrous branches)
    num_classes: int = 21
    output_stride: int = 16             # 8, 16 or 32; changes no weight
    multi_grid: Tuple[int, ...] = ()    # unit rates of the last stage, e.g. (1, 2, 4); changes no weight
    vortex_module: str = "A"            # Vortex Pooling module A or B; changes no weight
    aux: bool = False                   # the auxiliary FCN head on stage 3
    decoder: bool = False               # the DeepLabV3+ decoder on the backbone's stride-4 features
    # How the head fuses its branches: "deeplab" (1x1 conv, the paper's) or "gluoncv" (1x1 conv, then
    # gluoncv's 3x3 conv), see models/heads.py. gluoncv's trained DeepLabV3 is
    # head_variant="gluoncv", dilation_rule="gluoncv", output_stride=8, aux=True.
    head_variant: str = "deeplab"
    # "uniform", or "gluoncv" (ResNet-v1b/v1s: the first block of a dilated stage at half its rate,
    # see backbones/resnet_v1b.py); changes no weight
    dilation_rule: str = "uniform"
    # the head's atrous 3x3 convs and the decoder's 3x3 convs as depthwise 3x3 + pointwise 1x1 (TF's
    # aspp_with_separable_conv / decoder_use_separable_conv); off: the paper's dense convs
    separable: bool = False

    # what must agree for a checkpoint's weights to fit a network
    WEIGHT_FIELDS = ("backbone", "head", "num_classes", "aux", "decoder", "head_variant", "separable")

    def __post_init__(self):
        normalised = dict(backbone=canonical_backbone(self.backbone), head=str(self.head).lower(),
                          vortex_module=str(self.vortex_module).upper(),
                          multi_grid=tuple(int(rate) for rate in (self.multi_grid or ())),
                          num_classes=int(self.num_classes), output_stride=int(self.output_stride),
                          aux=bool(self.aux), decoder=bool(self.decoder), head_variant=str(self.head_variant).lower(),
                          dilation_rule=str(self.dilation_rule).lower(), separable=bool(self.separable))
        for name, value in normalised.items():  # frozen: normalise in place once, here
            object.__setattr__(self, name, value)
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")
        if self.vortex_module not in VORTEX_MODULES:
            raise ValueError(f"Vortex module must be A or B, got {self.vortex_module!r}")
        if any(rate < 1 for rate in self.multi_grid):
            raise ValueError(f"multi_grid rates must be >= 1, got {self.multi_grid}")
        if self.head_variant not in HEAD_VARIANTS:
            raise ValueError(f"head_variant must be one of {', '.join(HEAD_VARIANTS)}, got {self.head_variant!r}")
        check_dilation_rule(self.backbone, self.dilation_rule)

    @property
    def name(self) -> str:
        """The registry-style name, e.g. ``deeplabv3_resnet101_v2_aspp``, ``deeplabv3plus_xception65_vortex``;
        a gluoncv-style head adds ``_gluoncv`` (``deeplabv3_resnet101_v1s_aspp_gluoncv``), separable convs
        ``_sep`` (``deeplabv3plus_mobilenetv2_1.0_lite_sep``)."""
        variant = "" if self.head_variant == "deeplab" else f"_{self.head_variant}"
        separable = "_sep" if self.separable else ""
        return f"deeplabv3{'plus' if self.decoder else ''}_{self.backbone}_{self.head}{variant}{separable}"

    def replace(self, **changes) -> "ModelSpec":
        """A copy with some fields changed, e.g. ``spec.replace(output_stride=8)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {field.name: list(value) if isinstance(value, tuple) else value
                for field, value in ((f, getattr(self, f.name)) for f in dataclasses.fields(self))}

    @classmethod
    def from_dict(cls, description: dict) -> "ModelSpec":
        """The spec a checkpoint's ``meta["model"]`` describes; ``ValueError`` for fields this version lacks."""
        known = {field.name for field in dataclasses.fields(cls)}
        if unknown := sorted(set(description) - known):
            raise ValueError(f"the model description has fields this version of deeplab_gluon does not know "
                             f"({', '.join(unknown)}); it was written by a newer version")
        return cls(**description)

    @classmethod
    def from_config(cls, config, **overrides) -> "ModelSpec":
        """The spec named by a job's config (e.g. ``TrainConfig``), plus ``overrides``: each field of the
        spec is the config's field of the same name, and a config without one (a renamed flag field) is a
        ``TypeError`` naming it, not a silent fall-back to the spec's default."""
        names = [field.name for field in dataclasses.fields(cls) if field.name not in overrides]
        if missing := [name for name in names if not hasattr(config, name)]:
            raise TypeError(f"{type(config).__name__} has no field for ModelSpec's {', '.join(missing)} "
                            f"(renamed? pass it as ModelSpec.from_config(config, {missing[0]}=...))")
        return cls(**{name: getattr(config, name) for name in names}, **overrides)

    def weight_differences(self, other: "ModelSpec") -> List[str]:
        """Why weights saved for ``self`` do not fit ``other``, one phrase per differing field."""
        return [f"{key}: checkpoint has {getattr(self, key)!r}, this run has {getattr(other, key)!r}"
                for key in self.WEIGHT_FIELDS if getattr(self, key) != getattr(other, key)]

