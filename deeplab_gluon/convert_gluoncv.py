"""Turn gluoncv's trained DeepLabV3 weights into a checkpoint of this package.

    python -m deeplab_gluon.convert_gluoncv --model deeplab_resnet101_voc \\
        --params ~/.mxnet/models/deeplab_resnet101_voc-311ed22c.params --output runs/gcv/deeplab_resnet101_voc.ckpt

``--params`` is the file ``gluoncv.model_zoo.get_model(name, pretrained=True, root=ROOT)`` downloads to
``ROOT/<name>-<first 8 hex digits of its sha1>.params``. The checkpoint is an ordinary one: its
``ModelSpec`` is gluoncv's network (``resnet<depth>_v1s`` backbone dilated by gluoncv's rule to output
stride 8, ASPP with gluoncv's fusion, the auxiliary FCN head) and its meta carries the class names, their
colours and the dataset, so ``evaluate``, ``predict``, ``export`` and ``train.py --init_from`` take it as it
is. On gluoncv's crop size (480 x 480) it gives gluoncv's outputs; unlike gluoncv's network it takes any
input size.

A file that is not the ``--model`` named is refused in one line naming what is missing, unexpected or of
another shape, and which gluoncv network it looks like (exit 2).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import mxnet as mx

from .checkpoint import Checkpoint, CheckpointError
from .cli import JobError, UsageError, flag, output_problem, run_job
from .models import ModelSpec, build_model
from .models.backbones.base import guess_zoo_model, read_zoo_params
from .precision import file_digest

PROG = "convert_gluoncv"


@dataclass(frozen=True)
class GluonCVModel:
    """One of gluoncv's published DeepLabV3 segmentation models."""
    name: str       # gluoncv's model-zoo name, e.g. deeplab_resnet101_voc
    depth: int      # its ResNet-v1s depth
    trained_on: str  # gluoncv's dataset acronym: voc, coco, ade, citys
    sha1: str       # of the published .params file (gluoncv 0.10.5, model_zoo/model_store.py)

    @property
    def dataset(self) -> str:
        """This package's dataset with the model's classes: COCO's model predicts the 21 VOC categories."""
        return DATASET_OF[self.trained_on]

    @property
    def spec(self) -> ModelSpec:
        from .data import dataset_classes

        return ModelSpec(backbone=f"resnet{self.depth}_v1s", head="aspp", head_variant="gluoncv",
                         dilation_rule="gluoncv", output_stride=8, aux=True,
                         num_classes=len(dataset_classes(self.dataset)))


# gluoncv's dataset acronym -> ours. gluoncv trains its COCO models on the COCO images of the 20 VOC
# categories (its COCOSegmentation.CAT_LIST), in VOC's class order, so they are VOC models.
DATASET_OF = {"voc": "voc", "coco": "voc", "ade": "ade20k", "citys": "cityscapes"}
# where train.py's docs put each dataset; recorded as the checkpoint's data_dir (evaluate's default)
DEFAULT_DATA_DIRS = {"voc": "VOCdevkit_aug", "ade20k": "ADEChallengeData2016", "cityscapes": "cityscapes"}
# gluoncv 0.10.5's DeepLabV3 ResNet names (model_zoo.py); it has no resnet50 voc/coco, no resnet152 ade/citys
GLUONCV_MODELS: Dict[str, GluonCVModel] = {model.name: model for model in (
    GluonCVModel("deeplab_resnet101_voc", 101, "voc", "311ed22c63f3ac28b5f1e1663c458f26600e62da"),
    GluonCVModel("deeplab_resnet152_voc", 152, "voc", "d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d"),
    GluonCVModel("deeplab_resnet101_coco", 101, "coco", "ed817f76086abb4c3404af62ec1b5487c67642b7"),
    GluonCVModel("deeplab_resnet152_coco", 152, "coco", "83247aaeeded6988790cd93ac93151514094846f"),
    GluonCVModel("deeplab_resnet50_ade", 50, "ade", "c7789b237adc7253405bee57c84d53b15db45942"),
    GluonCVModel("deeplab_resnet101_ade", 101, "ade", "bf1584dfcec12063eff3075ee643e181c0f6d443"),
    GluonCVModel("deeplab_resnet50_citys", 50, "citys", "cf6a7bb3d55360933de647a8505f7936003902a4"),
    GluonCVModel("deeplab_resnet101_citys", 101, "citys", "eb8477a91efc244c85b364c0736664078aaf0e65"),
)}
# gluoncv 0.10.5's other DeepLab names, and why this package cannot express them as a ModelSpec
UNSUPPORTED_MODELS: Dict[str, str] = {
    **{f"deeplab_resnest{depth}_ade": "a ResNeSt backbone (split attention), which this package does not have"
       for depth in (50, 101, 200, 269)},
    "deeplab_v3b_plus_wideresnet_citys": "gluoncv's DeepLabV3b+ on a WideResNet-38 backbone, which this package "
                                         "does not have",
    **{f"deeplab_resnet101_{data}_int8": "a quantized MXNet symbol, not Gluon parameters; convert "
       f"deeplab_resnet101_{data} and use --precision int8" for data in ("voc", "coco")},
}


def parse_gluoncv_model(name: str) -> str:
    """``--model``: a name of :data:`GLUONCV_MODELS`; any other refused in one line naming the supported ones."""
    if name in GLUONCV_MODELS:
        return name
    supported = ", ".join(GLUONCV_MODELS)
    if name in UNSUPPORTED_MODELS:
        raise argparse.ArgumentTypeError(f"{name} cannot be converted: it is {UNSUPPORTED_MODELS[name]}; "
                                         f"supported: {supported}")
    raise argparse.ArgumentTypeError(f"{name!r} is not a gluoncv DeepLabV3 model this converter knows; "
                                     f"supported: {supported}")


parse_gluoncv_model.__name__ = "model"  # argparse names the type in its error message


def _name_prefixes() -> Tuple[Tuple[str, str], ...]:
    """(gluoncv prefix, our prefix) pairs; every parameter of the network starts with exactly one of each.

    The backbone mirrors gluoncv's ResNetV1b tree, so it only moves under ``backbone.``. gluoncv's head is
    ``head.aspp.concurent.{0-3}`` (conv, BN), ``.4.gap`` (pool, conv, BN), ``head.aspp.project`` (conv, BN)
    and ``head.block`` (conv, BN, ReLU, dropout, classifier); its ``auxlayer.block`` is the same five.
    """
    pairs = [(f"{stem}.", f"backbone.{stem}.") for stem in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")]
    for branch in range(4):
        pairs += [(f"head.aspp.concurent.{branch}.0.", f"head.branches.{branch}.conv."),
                  (f"head.aspp.concurent.{branch}.1.", f"head.branches.{branch}.bn.")]
    pairs += [("head.aspp.concurent.4.gap.1.", "head.branches.4.project.conv."),
              ("head.aspp.concurent.4.gap.2.", "head.branches.4.project.bn."),
              ("head.aspp.project.0.", "head.fusion.project.conv."),
              ("head.aspp.project.1.", "head.fusion.project.bn."),
              ("head.block.0.", "head.fusion.block.project.conv."),
              ("head.block.1.", "head.fusion.block.project.bn."),
              ("head.block.4.", "head.fusion.block.classifier."),
              ("auxlayer.block.0.", "aux_head.project.conv."),
              ("auxlayer.block.1.", "aux_head.project.bn."),
              ("auxlayer.block.4.", "aux_head.classifier.")]
    return tuple(pairs)


NAME_PREFIXES = _name_prefixes()


def gluoncv_name(our_name: str) -> Optional[str]:
    """gluoncv's name of one of our parameters (``head.fusion.block.classifier.weight`` ->
    ``head.block.4.weight``), or None for a parameter gluoncv's DeepLabV3 does not have."""
    for theirs, ours in NAME_PREFIXES:
        if our_name.startswith(ours):
            return theirs + our_name[len(ours):]
    return None


def guess_gluoncv_model(shapes: Dict[str, Tuple[int, ...]]) -> Optional[str]:
    """Which gluoncv network a ``{structural name: shape}`` file holds, e.g. ``deeplab_resnet50_ade``, or None."""
    backbone = guess_zoo_model(shapes)
    if backbone is None:
        return None
    if "head.aspp.project.0.weight" not in shapes:
        head = "with another head than gluoncv's DeepLabV3" if any(n.startswith("head.") for n in shapes) \
            else "alone (an ImageNet backbone, no segmentation head)"
        return f"{backbone} {head}"
    classes = shapes.get("head.block.4.weight", (0,))[0]
    trained_on = {21: "voc (or _coco)", 150: "ade", 19: "citys"}.get(classes, f"? with {classes} classes")
    return f"deeplab_{backbone.split('_')[0]}_{trained_on}"


def read_gluoncv_params(path: Path, model: GluonCVModel) -> Dict[str, mx.nd.NDArray]:
    """``{gluoncv structural name: array}`` of a gluoncv DeepLabV3 file.

    Files gluoncv writes with ``save_parameters`` are read directly; older prefixed-name files are read
    through gluoncv's own network (then gluoncv must be installed). ``ValueError`` in one line otherwise.
    """
    def gluoncv_network():
        from gluoncv.model_zoo import get_model  # only for legacy-named files: gluoncv imports slowly

        return get_model(model.name, pretrained=False, pretrained_base=False)  # nothing is downloaded

    return read_zoo_params(str(path), gluoncv_network, model.name)


def convert(path: Path, model: GluonCVModel, ctx=None):
    """Our network for ``model`` with the weights of gluoncv's file ``path``: ``(net, spec)``.

    ``ValueError`` in one line when the file does not hold ``model``: counts and examples of the
    parameters missing, unexpected and of another shape (in gluoncv's names), and what it looks like.
    """
    ctx = ctx or mx.cpu()
    loaded = read_gluoncv_params(path, model)
    spec = model.spec
    net = build_model(spec, ctx, initialize=False)
    ours = net._collect_params_with_prefix()
    wanted = {gluoncv_name(name): name for name in ours}
    if None in wanted:  # a parameter without a gluoncv counterpart: the mapping is out of date, not the file
        raise RuntimeError(f"no gluoncv name for {wanted[None]}; update NAME_PREFIXES")
    missing = sorted(set(wanted) - set(loaded))
    unexpected = sorted(set(loaded) - set(wanted))
    mismatched = [name for name in sorted(set(wanted) & set(loaded))
                  if tuple(loaded[name].shape) != tuple(ours[wanted[name]].shape)]
    if missing or unexpected or mismatched:
        guess = guess_gluoncv_model({name: tuple(value.shape) for name, value in loaded.items()})
        looks_like = f"; it looks like {guess}" if guess and guess != model.name else ""
        found = [f"{len(names)} {what} (e.g. {', '.join(names[:3])})"
                 for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
        if mismatched:
            first = mismatched[0]
            found.append(f"{len(mismatched)} of another shape (e.g. {first}: {tuple(loaded[first].shape)}, "
                         f"expected {tuple(ours[wanted[first]].shape)})")
        raise ValueError(f"{path} is not a {model.name} parameter file: {', '.join(found)}{looks_like}")
    for theirs, name in wanted.items():
        ours[name]._load_init(loaded[theirs], ctx)
    return net, spec


def checkpoint_meta(model: GluonCVModel, spec: ModelSpec, params: Path, sha1: str, data_dir: Optional[str]) -> dict:
    """What a converted checkpoint records: the model, classes, colours, dataset and where it came from."""
    from .data import NAMED_COLOURS, dataset_classes, full_palette

    classes = list(dataset_classes(model.dataset))
    return {
        "model": spec.to_dict(), "classes": classes,
        "palette": full_palette(NAMED_COLOURS.get(model.dataset))[:len(classes)].astype(int).tolist(),
        "ignore_label": 255,
        # evaluate and predict default to these; gluoncv trained and evaluated on 480 x 480 crops
        "config": {"dataset": model.dataset, "data_dir": data_dir or DEFAULT_DATA_DIRS[model.dataset],
                   "crop_size": 480},
        "source": {"gluoncv_model": model.name, "trained_on": model.trained_on, "params": str(params),
                   "sha1": sha1, "published_sha1": sha1 == model.sha1},
    }


@dataclass
class ConvertConfig:
    """Command-line settings of ``python -m deeplab_gluon.convert_gluoncv``."""

    model: str = field(default="", metadata=flag(
        "gluoncv's model name: deeplab_resnet{101,152}_{voc,coco} or deeplab_resnet{50,101}_{ade,citys} "
        "(not the ResNeSt, WideResNet or int8 DeepLabs)", parse=parse_gluoncv_model, metavar="NAME", required=True))
    params: Optional[Path] = field(default=None, metadata=flag(
        "the .params file gluoncv's get_model(NAME, pretrained=True, root=ROOT) downloaded "
        "(ROOT/NAME-<hash>.params)", required=True))
    output: Optional[Path] = field(default=None, metadata=flag("the checkpoint file to write (.ckpt)", required=True))
    data_dir: Optional[str] = field(default=None, metadata=flag(
        "the dataset's folder, recorded for evaluate; default: VOCdevkit_aug, ADEChallengeData2016 or cityscapes"))

    def problems(self) -> List[str]:
        problems = []
        if not self.params.is_file():
            problems.append(f"--params {self.params} is not a file")
        problems.append(output_problem(self.output, "--output", folder=False))
        return problems


def run_conversion(config: ConvertConfig) -> int:
    model = GLUONCV_MODELS[config.model]
    sha1 = file_digest(config.params, "sha1")
    published = {entry.sha1: entry.name for entry in GLUONCV_MODELS.values()}
    if published.get(sha1, model.name) != model.name:  # same structure (voc/coco), other weights: say so
        raise UsageError(f"{config.params} is gluoncv's published {published[sha1]} file, not {model.name}; "
                         f"pass --model {published[sha1]}")
    try:
        net, spec = convert(config.params, model)
    except ValueError as err:
        raise UsageError(str(err)) from None
    meta = checkpoint_meta(model, spec, config.params.resolve(), sha1, config.data_dir)
    try:
        Checkpoint.write(config.output, net, None, meta)
    except CheckpointError as err:
        raise JobError(str(err)) from None
    print(f"wrote {config.output}: {model.name} as {spec.name} (output stride 8, auxiliary head, "
          f"{spec.num_classes} {model.dataset} classes)")
    if sha1 != model.sha1:  # e.g. the user's own gluoncv training: fine, but say it is not the published one
        print(f"note: {config.params} is not gluoncv's published {model.name} file (sha1 {sha1[:8]}, "
              f"published {model.sha1[:8]})")
    print(f"next: python -m deeplab_gluon.predict --checkpoint {config.output} --input IMAGES --output_dir DIR")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, ConvertConfig, run_conversion, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
