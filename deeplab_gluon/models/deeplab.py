"""DeepLabV3(+): backbone -> context head [-> decoder] -> upsampling to the input size; ``build_model(spec)``."""
from __future__ import annotations

from typing import List, Optional, Sequence

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .backbones import BACKBONES, get_backbone
from .decoder import Decoder
from .heads import ASPP_RATES, ASPPHead, FCNHead, VORTEX_RATES, VortexHead
from .spec import HEADS, ModelSpec


class DeepLabV3(HybridBlock):
    """Backbone, context head, optional DeepLabV3+ decoder and optional auxiliary head, composed.

    With a ``decoder``, the head gives its 256-channel features (built with ``num_classes=None``)
    and the decoder classifies them with the backbone's stride-4 features: DeepLabV3+.

    Forward: ``x`` (N, 3, H, W) -> logits (N, num_classes, H, W), or ``(logits, aux_logits)``
    when an auxiliary head is given. The upsampling takes its size from ``x`` at run time
    (``BilinearResize2D(mode='like')``), so a hybridized network accepts any input size.
    """

    def __init__(self, backbone: HybridBlock, head: HybridBlock, aux_head: Optional[HybridBlock] = None,
                 decoder: Optional[HybridBlock] = None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.backbone = backbone
            self.head = head
            self.aux_head = aux_head
            self.decoder = decoder

    def hybrid_forward(self, F, x):
        low_level, stage3, features = self.backbone(x)
        out = self.head(features)
        if self.decoder is not None:
            out = self.decoder(out, low_level)
        logits = F.contrib.BilinearResize2D(out, x, mode="like")
        if self.aux_head is None:
            return logits
        return logits, F.contrib.BilinearResize2D(self.aux_head(stage3), x, mode="like")


def split_outputs(outputs):
    """``(logits, aux_logits or None)`` of a :class:`DeepLabV3`'s output, which is the logits
    (N, C, H, W) alone, or ``(logits, aux_logits)`` with the auxiliary head; NDArrays or Symbols.

    The one place that knows this output format (training loss, inference and the precision graphs use it).
    """
    if not isinstance(outputs, (tuple, list)):
        return outputs, None
    if not 1 <= len(outputs) <= 2:
        raise ValueError(f"outputs must be logits or (logits, aux_logits), got {len(outputs)} arrays")
    return outputs[0], (outputs[1] if len(outputs) == 2 else None)


def head_rates(head: str, output_stride: int) -> Sequence[int]:
    """The atrous rates a head uses at an output stride (see ``heads.ASPP_RATES`` / ``VORTEX_RATES``);
    the ``lite`` head has none."""
    if head == "lite":
        return ()
    return (ASPP_RATES if head == "aspp" else VORTEX_RATES)[output_stride]


def build_model(spec: ModelSpec, ctx=None, *, freeze_bn: bool = False, syncbn: bool = False,
                pretrained_base: Optional[str] = None, initialize: bool = True, dropout: float = 0.1,
                norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None) -> DeepLabV3:
    """Build the network ``spec`` describes, initialised and ready to run.

    Parameters
    ----------
    spec : the :class:`ModelSpec` (a checkpoint's ``Checkpoint.spec``; ``spec.replace(output_stride=8)``
        evaluates an OS16-trained model at OS8 with the same weights).
    ctx : context or list of contexts to initialise on (default CPU).
    freeze_bn : normalisation layers use their stored statistics and their gamma/beta do not learn.
    syncbn : synchronise BatchNorm statistics over the contexts in ``ctx``.
    pretrained_base : the backbone's ImageNet model-zoo ``.params`` file, or None for random
        initialisation. Nothing is downloaded.
    initialize : False leaves parameters uninitialised (to load a checkpoint right after).
    norm_layer, norm_kwargs : another normalisation layer and its arguments.
    """
    norm_kwargs = dict(norm_kwargs or {})
    if syncbn:
        from mxnet.gluon.contrib.nn import SyncBatchNorm

        norm_layer = SyncBatchNorm
        norm_kwargs["num_devices"] = len(ctx) if isinstance(ctx, list) else 1
    if freeze_bn:
        norm_kwargs["use_global_stats"] = True
    norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    body = get_backbone(spec.backbone, spec.output_stride, spec.multi_grid or None,
                        dilation_rule=spec.dilation_rule, **norm)
    rates = head_rates(spec.head, spec.output_stride)
    head_classes = None if spec.decoder else spec.num_classes  # with a decoder, the head gives features
    head_options = dict(dropout=dropout, variant=spec.head_variant, separable=spec.separable, **norm)
    if spec.head in ("aspp", "lite"):  # lite: ASPP without its atrous branches
        context_head = ASPPHead(body.out_channels, head_classes, rates, **head_options)
    else:
        context_head = VortexHead(body.out_channels, head_classes, rates, module=spec.vortex_module, **head_options)
    aux_head = FCNHead(body.stage3_channels, spec.num_classes, dropout=dropout, **norm) if spec.aux else None
    decoder = (Decoder(body.low_level_channels, spec.num_classes, dropout=dropout, separable=spec.separable, **norm)
               if spec.decoder else None)
    net = DeepLabV3(body, context_head, aux_head, decoder)
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
            body.load_pretrained(pretrained_base, ctx)
        else:
            body.initialize(init, ctx=ctx)
        for block in (context_head, aux_head, decoder):
            if block is not None:
                block.initialize(init, ctx=ctx)
    return net


def get_deeplab(backbone: str = "resnet50_v2", head: str = "aspp", output_stride: int = 16,
                num_classes: int = 21, pretrained_base: Optional[str] = None,
                multi_grid: Optional[Sequence[int]] = None, aux: bool = False, freeze_bn: bool = False,
                vortex_module: str = "A", decoder: bool = False, head_variant: str = "deeplab",
                dilation_rule: str = "uniform", separable: bool = False, ctx=None, initialize: bool = True,
                **build_kwargs) -> DeepLabV3:
    """Build a DeepLabV3 from keywords: ``build_model(ModelSpec(backbone, head, ...), ctx, ...)``.

    ``backbone``: any name :func:`list_backbones` gives (``resnet_v2_50`` is accepted too); ``head``:
    ``"aspp"``, ``"vortex"`` or ``"lite"`` (1x1 + image pooling only); ``output_stride``: 8, 16 or 32; ``multi_grid``: unit rates of the last
    stage, e.g. ``(1, 2, 4)``; ``aux``: the FCN auxiliary head on stage 3; ``decoder``: DeepLabV3+;
    ``head_variant``: ``"deeplab"`` or ``"gluoncv"``; ``dilation_rule``: ``"uniform"`` or ``"gluoncv"``
    (ResNet-v1b/v1s); ``separable``: depthwise-separable atrous and decoder convs. The rest as in :func:`build_model`.
    """
    spec = ModelSpec(backbone=backbone, head=head, num_classes=num_classes, output_stride=output_stride,
                     multi_grid=tuple(multi_grid or ()), vortex_module=vortex_module, aux=aux, decoder=decoder,
                     head_variant=head_variant, dilation_rule=dilation_rule, separable=separable)
    return build_model(spec, ctx, freeze_bn=freeze_bn, pretrained_base=pretrained_base, initialize=initialize,
                       **build_kwargs)


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


# name -> the spec fields it fixes, e.g. "deeplabv3_resnet101_v2_aspp", "deeplabv3plus_mobilenetv2_1.0_lite_sep".
# The lite head without a decoder has no 3x3 conv, so "_lite_sep" would name the same network as "_lite": left out.
MODEL_REGISTRY = {ModelSpec(backbone=backbone, head=head, decoder=decoder, separable=separable).name:
                  dict(backbone=backbone, head=head, decoder=decoder, separable=separable)
                  for backbone in BACKBONES for head in HEADS for decoder in (False, True)
                  for separable in (False, True) if not (head == "lite" and separable and not decoder)}


def list_models() -> List[str]:
    """The names :func:`get_model` builds (gluoncv's ``get_model`` style), sorted."""
    return sorted(MODEL_REGISTRY)


def list_backbones() -> List[str]:
    """The backbone names a :class:`ModelSpec` accepts."""
    return list(BACKBONES)


def get_model(name: str, **kwargs) -> DeepLabV3:
    """Build a registered model by name; ``kwargs`` go to :func:`get_deeplab` (``num_classes``, ``output_stride``...)."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return get_deeplab(**MODEL_REGISTRY[name], **kwargs)
