"""Small random-weight DeepLab networks and checkpoints for the evaluation, prediction and export tests."""
from pathlib import Path
from typing import Optional, Sequence

import mxnet as mx

from deeplab_gluon.checkpoint import Checkpoint, checkpoint_name
from deeplab_gluon.models import ModelSpec, get_deeplab


def tiny_net(num_classes: int = 5, head: str = "aspp", output_stride: int = 16, aux: bool = False, seed: int = 0,
             logit_scale: float = 3.0, vortex_module: str = "A"):
    """A hybridized ResNet-18-v2 DeepLab with random weights.

    Freshly initialised, its classifier (N(0, 0.01) weights) gives logits of about 0.1, so every
    probability is close to uniform, which would hide errors in probability averaging; ``logit_scale``
    widens the classifier so the probabilities are soft but distinct and the arg-max varies over the image.
    """
    mx.random.seed(seed)
    net = get_deeplab("resnet18_v2", head, output_stride, num_classes=num_classes, aux=aux,
                      vortex_module=vortex_module)
    for classifier in [net.head.fusion.classifier] + ([net.aux_head.classifier] if aux else []):
        classifier.weight.set_data(classifier.weight.data() * logit_scale)
    net.hybridize()
    return net


def save_tiny_checkpoint(folder: Path, net, classes: Sequence[str], dataset: Optional[str] = None,
                         data_dir: Optional[Path] = None, iteration: int = 7, head: str = "aspp",
                         output_stride: int = 16, aux: bool = False, vortex_module: str = "A") -> Path:
    """Write ``folder/checkpoints/iter-<iteration>.ckpt`` with the meta a training run records."""
    spec = ModelSpec("resnet18_v2", head, len(classes), output_stride, vortex_module=vortex_module, aux=aux)
    meta = {"iteration": iteration, "model": spec.to_dict(),
            "classes": list(classes), "ignore_label": 255,
            "config": {"dataset": dataset, "data_dir": str(data_dir) if data_dir else None}}
    return Checkpoint.write(Path(folder) / "checkpoints" / checkpoint_name(iteration), net, None, meta).path
