"""Parameters and multiply-adds of every model this package builds: backbone x head x decoder x output stride.

For each backbone of the registry (ResNet-v2 18-152, ResNet-v1b 18-152, ResNet-v1s 50-152,
MobileNetV2 1.0, Xception-65), each head (ASPP, Vortex), without and with the DeepLabV3+ decoder,
at output strides 16 and 8: learnable parameters and multiply-adds (MACs) for one image of
513x513 with 21 classes (PASCAL VOC), split into backbone, head and decoder.

Nothing is timed and nothing is initialised: each network is built with ``initialize=False``,
traced into a symbol, and both counts come from the inferred shapes (``common.count_macs``,
``common.count_params``), so the whole table takes seconds. MACs are those of the Convolution /
Deconvolution / FullyConnected layers (``output elements x weights per output``); pooling,
BatchNorm, element-wise ops and resizing are not counted, so Vortex Pooling's box filters (adds,
no multiplies) do not show and Vortex has ASPP's figures. Parameters are weights, biases and
BatchNorm's gamma/beta (not its running statistics), of the layers the forward pass uses: with the
decoder the head's own classifier is not built, the decoder's is.

    python benchmarks/model_table.py                 # the table; writes benchmarks/results/model_table.json
    python benchmarks/model_table.py --markdown      # the README's compact table (ASPP = Vortex, see above)
    python benchmarks/model_table.py --size 321 --output-strides 16 --backbones resnet101_v2 mobilenetv2_1.0
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (path set above)

from deeplab_gluon.models import get_deeplab, list_backbones  # noqa: E402
from deeplab_gluon.models.spec import HEADS, ModelSpec  # noqa: E402

NUM_CLASSES = 21


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list_backbones(), choices=list_backbones(),
                        metavar="NAME", help="registry names (default: all: %(default)s)")
    # the lite head (no atrous branches) is left out of the default: the compact table pairs ASPP with Vortex
    parser.add_argument("--heads", nargs="+", default=["aspp", "vortex"], choices=list(HEADS))
    parser.add_argument("--decoders", type=int, nargs="+", default=[0, 1], choices=[0, 1],
                        help="0: DeepLabV3, 1: DeepLabV3+ (default both)")
    parser.add_argument("--output-strides", type=int, nargs="+", default=[16, 8], choices=[8, 16, 32])
    parser.add_argument("--size", type=int, default=513, help="square input side (default 513)")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    parser.add_argument("--markdown", action="store_true",
                        help="also print the compact Markdown table of the README")
    parser.add_argument("--output", default="model_table", help="results name: benchmarks/results/<name>.json")
    return parser.parse_args(argv)


def measure(backbone: str, head: str, decoder: bool, output_stride: int, size: int, num_classes: int) -> dict:
    """One row: the model's registry name, its parameters and MACs, each split by part."""
    spec = ModelSpec(backbone=backbone, head=head, decoder=decoder, output_stride=output_stride,
                     num_classes=num_classes)
    net = get_deeplab(backbone, head, output_stride, num_classes, decoder=decoder, initialize=False)
    prefixes = {"backbone": net.backbone.prefix, "head": net.head.prefix}
    if net.decoder is not None:
        prefixes["decoder"] = net.decoder.prefix
    shape = (1, 3, size, size)
    macs = common.count_macs(net, shape)
    params = common.count_params(net, shape)
    macs_by_part = common.sum_by_prefix(macs["by_layer"], prefixes)
    params_by_part = common.sum_by_prefix(params["by_name"], prefixes)
    if macs_by_part.get("other") or params_by_part.get("other"):  # every layer is in one of the parts
        raise RuntimeError(f"{spec.name}: layers outside {', '.join(prefixes)}")
    return {
        "model": spec.name, "backbone": spec.backbone, "head": head, "decoder": bool(decoder),
        "output_stride": output_stride, "size": size, "num_classes": num_classes,
        "macs": macs["total"], "gmacs": macs["total"] / 1e9,
        "backbone_gmacs": macs_by_part["backbone"] / 1e9, "head_gmacs": macs_by_part["head"] / 1e9,
        "decoder_gmacs": macs_by_part.get("decoder", 0) / 1e9,
        "params": params["total"], "params_m": params["total"] / 1e6,
        "backbone_params_m": params_by_part["backbone"] / 1e6, "head_params_m": params_by_part["head"] / 1e6,
        "decoder_params_m": params_by_part.get("decoder", 0) / 1e6,
        "conv_layers": macs["layers"],
    }


def rows_for(args) -> list:
    return [measure(backbone, head, bool(decoder), output_stride, args.size, args.num_classes)
            for backbone in args.backbones for head in args.heads for decoder in args.decoders
            for output_stride in args.output_strides]


def markdown_table(rows, output_strides) -> str:
    """Backbone per line: parameters and GMACs per output stride, DeepLabV3 / DeepLabV3+ side by side.

    ASPP's figures; Vortex's are the same and said so (checked here, not assumed)."""
    by_key = {(r["backbone"], r["head"], r["decoder"], r["output_stride"]): r for r in rows}
    for (backbone, head, decoder, output_stride), row in by_key.items():
        if head == "lite":
            continue
        other = by_key.get((backbone, "aspp" if head == "vortex" else "vortex", decoder, output_stride))
        if other and (other["macs"], other["params"]) != (row["macs"], row["params"]):
            raise RuntimeError(f"{row['model']} OS{output_stride}: ASPP and Vortex differ; "
                               "the compact table would hide it")
    header = ["backbone", "params (M) V3 / V3+"] + [f"GMACs OS{s} V3 / V3+" for s in output_strides]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    head = next(iter(dict.fromkeys(r["head"] for r in rows)))

    def pair(field, output_stride, fmt):
        values = [by_key.get((backbone, head, decoder, output_stride)) for decoder in (False, True)]
        return " / ".join("-" if v is None else fmt.format(v[field]) for v in values)

    for backbone in backbones:
        cells = [f"`{backbone}`", pair("params_m", output_strides[0], "{:.1f}")]
        cells += [pair("gmacs", s, "{:.1f}") for s in output_strides]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = rows_for(args)
    print(f"parameters and multiply-adds, one {args.size}x{args.size} image, {args.num_classes} classes "
          f"(conv/dense layers only; Vortex's box filters are not multiply-adds)")
    print(common.format_table(rows, ["model", "output_stride", "params_m", "backbone_params_m", "gmacs",
                                     "backbone_gmacs", "head_gmacs", "decoder_gmacs"],
                              ["model", "OS", "params M", "backbone M", "GMACs", "backbone", "head", "decoder"]))
    if args.markdown:
        print()
        print(markdown_table(rows, args.output_strides))
    payload = {
        "benchmark": "model_table",
        "settings": {"size": args.size, "batch": 1, "num_classes": args.num_classes,
                     "macs": "Convolution/Deconvolution/FullyConnected layers only, from inferred shapes "
                             "(output elements x weights per output); pooling, BatchNorm, element-wise and "
                             "resizing not counted",
                     "params": "learnable: weights, biases, BatchNorm gamma/beta; not running statistics",
                     "spec": "ModelSpec defaults for everything else: no aux head, no multi-grid, "
                             "Vortex module A, the paper's head (head_variant), uniform dilation",
                     "command": "python benchmarks/model_table.py " + " ".join(sys.argv[1:] if argv is None else argv)},
        "results": rows,
    }
    print(f"\nwrote {common.write_results(args.output, payload)}")


if __name__ == "__main__":
    main()
