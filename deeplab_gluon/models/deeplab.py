"""DeepLabV3: dilated ResNet-v2 backbone -> context head -> bilinear upsampling to the input size."""
from __future__ import annotations

import re
from typing import Optional, Sequence

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .heads import ASPP_RATES, ASPPHead, FCNHead, VORTEX_RATES, VortexHead
from .resnet_v2 import RESNET_V2_SPECS, DilatedResNetV2, load_backbone_weights

HEADS = ("aspp", "vortex")


class DeepLabV3(HybridBlock):
    """Backbone, context head and optional auxiliary head, composed.

    Forward: ``x`` (N, 3, H, W) -> logits (N, num_classes, H, W), or ``(logits, aux_logits)``
    when an auxiliary head is given. The upsampling takes its size from ``x`` at run time
    (``BilinearResize2D(mode='like')``), so a hybridized network accepts any input size.
    """

    def __init__(self, backbone: DilatedResNetV2, head: HybridBlock, aux_head: Optional[HybridBlock] = None,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.backbone = backbone
            self.head = head
            self.aux_head = aux_head

    def hybrid_forward(self, F, x):
        stage3, features = self.backbone(x)
        logits = F.contrib.BilinearResize2D(self.head(features), x, mode="like")
        if self.aux_head is None:
            return logits
        return logits, F.contrib.BilinearResize2D(self.aux_head(stage3), x, mode="like")


def parse_backbone(name: str) -> int:
    """ResNet-v2 depth from ``resnet50_v2``, ``resnet_v2_50`` (the TF recipe's spelling) or ``50``."""
    match = re.fullmatch(r"(?:resnet_?v2_?|resnet)?(\d+)(?:_?v2)?", str(name).strip().lower())
    if not match or int(match.group(1)) not in RESNET_V2_SPECS:
        choices = ", ".join(f"resnet{d}_v2" for d in RESNET_V2_SPECS)
        raise ValueError(f"unknown backbone {name!r}; choose one of {choices}")
    return int(match.group(1))


def head_rates(head: str, output_stride: int) -> Sequence[int]:
    """The atrous rates a head uses at an output stride (see ``heads.ASPP_RATES`` / ``VORTEX_RATES``)."""
    return (ASPP_RATES if head == "aspp" else VORTEX_RATES)[output_stride]


def get_deeplab(backbone: str = "resnet50_v2", head: str = "aspp", output_stride: int = 16,
                num_classes: int = 21, pretrained_base: Optional[str] = None,
                multi_grid: Optional[Sequence[int]] = None, aux: bool = False, freeze_bn: bool = False,
                vortex_module: str = "A", dropout: float = 0.1, norm_layer=nn.BatchNorm,
                norm_kwargs: Optional[dict] = None, ctx=None, initialize: bool = True) -> DeepLabV3:
    """Build a DeepLabV3, initialised and ready to run.

    Parameters
    ----------
    backbone : ``resnet{18,34,50,101,152}_v2`` (``resnet_v2_50`` is accepted too).
    head : ``"aspp"`` or ``"vortex"``.
    output_stride : 8, 16 or 32.
    pretrained_base : path to a model-zoo ``resnetXX_v2-*.params`` file for the backbone,
        or None for random initialisation. Nothing is downloaded.
    multi_grid : unit rates for the last stage, e.g. ``(1, 2, 4)``.
    aux : add the FCN auxiliary head on stage 3.
    freeze_bn : normalisation layers use their stored statistics and their gamma/beta do not learn.
    norm_layer, norm_kwargs : e.g. ``mxnet.gluon.contrib.nn.SyncBatchNorm`` with ``{"num_devices": 2}``.
    ctx : context or list of contexts to initialise on (default CPU).
    initialize : False leaves parameters uninitialised (to load a checkpoint right after).
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    depth = parse_backbone(backbone)
    norm_kwargs = dict(norm_kwargs or {})
    if freeze_bn:
        norm_kwargs["use_global_stats"] = True
    norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    body = DilatedResNetV2(depth, output_stride, multi_grid, **norm)
    rates = head_rates(head, output_stride)
    if head == "aspp":
        context_head = ASPPHead(body.out_channels, num_classes, rates, dropout=dropout, **norm)
    else:
        context_head = VortexHead(body.out_channels, num_classes, rates, module=vortex_module, dropout=dropout,
                                  **norm)
    aux_head = FCNHead(body.stage3_channels, num_classes, dropout=dropout, **norm) if aux else None
    net = DeepLabV3(body, context_head, aux_head)
    if freeze_bn:
        freeze_batchnorm(net)
    if initialize:
        ctx = ctx or mx.cpu()
        # He initialisation by fan-in: every conv starts with a similar weight norm. By fan-out, the
        # 3-channel stem started 4.6x smaller than the rest, and since a conv followed by BatchNorm
        # learns at a rate ~ lr / |w|^2, it churned ~20x faster than the others; from scratch on the
        # toy set this cut the loss after 600 steps from 0.69 to 0.53.
        init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
        if pretrained_base:
            load_backbone_weights(body, pretrained_base, ctx)
        else:
            body.initialize(init, ctx=ctx)
        context_head.initialize(init, ctx=ctx)
        if aux_head is not None:
            aux_head.initialize(init, ctx=ctx)
    return net


def batchnorm_layers(block: mx.gluon.Block):
    """Every BatchNorm (or SyncBatchNorm) inside ``block``, depth first."""
    found = [block] if isinstance(block, nn.BatchNorm) else []
    for child in block._children.values():
        found.extend(batchnorm_layers(child))
    return found


def freeze_batchnorm(net: mx.gluon.Block) -> None:
    """Stop gamma and beta of every normalisation layer from learning.

    The statistics are frozen by building the layers with ``use_global_stats=True``
    (``get_deeplab(freeze_bn=True)``); this handles the affine parameters.
    """
    for layer in batchnorm_layers(net):
        layer.gamma.grad_req = "null"
        layer.beta.grad_req = "null"


def build_model(description: dict, ctx=None, output_stride: Optional[int] = None, freeze_bn: bool = False,
                syncbn: bool = False, pretrained_base: Optional[str] = None, initialize: bool = True) -> DeepLabV3:
    """A DeepLabV3 from the model description a checkpoint stores (``meta["model"]``).

    ``description`` has ``backbone``, ``head``, ``num_classes``, ``aux``, ``output_stride`` and
    optionally ``multi_grid`` and ``vortex_module``. ``output_stride`` overrides the stored one
    (an OS16-trained model evaluated at OS8 uses the same weights). ``syncbn`` synchronises
    BatchNorm over the contexts in ``ctx``.
    """
    norm = {}
    if syncbn:
        from mxnet.gluon.contrib.nn import SyncBatchNorm

        norm = {"norm_layer": SyncBatchNorm, "norm_kwargs": {"num_devices": len(ctx) if isinstance(ctx, list) else 1}}
    return get_deeplab(description["backbone"], description["head"], output_stride or description["output_stride"],
                       num_classes=description["num_classes"], pretrained_base=pretrained_base,
                       multi_grid=tuple(description.get("multi_grid") or ()) or None, aux=description.get("aux", False),
                       freeze_bn=freeze_bn, vortex_module=description.get("vortex_module", "A"), ctx=ctx,
                       initialize=initialize, **norm)


# name -> keyword arguments of get_deeplab, e.g. "deeplabv3_resnet101_v2_aspp"
MODEL_REGISTRY = {f"deeplabv3_resnet{depth}_v2_{head}": dict(backbone=f"resnet{depth}_v2", head=head)
                  for depth in RESNET_V2_SPECS for head in HEADS}


def get_model(name: str, **kwargs) -> DeepLabV3:
    """Build a registered model by name; ``kwargs`` go to :func:`get_deeplab`."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(MODEL_REGISTRY))}")
    return get_deeplab(**MODEL_REGISTRY[name], **kwargs)
