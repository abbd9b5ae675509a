"""Small DeepLab networks (random weights, or trained briefly on colour blobs) and checkpoints for the tests."""
import functools
from pathlib import Path
from typing import Optional, Sequence

import mxnet as mx
import numpy as np

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


COLOUR_BLOB_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40))  # classes 1..4


def colour_blob_scene(rng, size: int):
    """``(image (size, size, 3) uint8, label (size, size) uint8)``: 1-3 discs or squares of a class's colour on
    a grey, noisy background. Colour decides the class, so a network learns it in a few dozen steps, unlike
    the toy shapes (which take hundreds); what is learnt still has boundaries, where models disagree."""
    image = np.full((size, size, 3), 128, np.float32) + rng.normal(0, 20, size=3)
    label = np.zeros((size, size), np.uint8)
    rows, cols = np.mgrid[:size, :size]
    for _ in range(rng.integers(1, 4)):
        cls, radius = int(rng.integers(1, 5)), rng.uniform(0.15, 0.3) * size
        cy, cx = rng.uniform(radius, size - radius, 2)
        if rng.random() < 0.5:
            inside = (rows - cy) ** 2 + (cols - cx) ** 2 < radius ** 2
        else:
            inside = (abs(rows - cy) < radius) & (abs(cols - cx) < radius)
        image[inside] = np.array(COLOUR_BLOB_COLOURS[cls - 1]) + rng.normal(0, 15, 3)
        label[inside] = cls
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


@functools.lru_cache(maxsize=2)  # several test files train the same one: once per session
def trained_tiny_net(head: str = "aspp", iterations: int = 40, size: int = 48, seed: int = 0,
                     backbone: str = "resnet18_v2", **spec_fields):
    """A ResNet-18-v2 DeepLab (or ``backbone``, with ``spec_fields`` such as ``decoder``/``separable``; OS16,
    5 classes) trained for ``iterations`` SGD steps of 8 colour-blob
    scenes, and 16 held-out scenes: ``(net, images (16, 3, size, size) normalised NDArray, labels (16, size,
    size) numpy)``. About 0.5 mIoU on the held-out scenes after 40 steps: confident on the blobs, unsure
    at their edges, as a real model is. A few seconds on 2 cores."""
    from deeplab_gluon.data import normalize_image
    from deeplab_gluon.trainer import SegmentationTrainer

    rng = np.random.default_rng(seed)
    scenes = [colour_blob_scene(rng, size) for _ in range(80)]
    images = np.stack([normalize_image(image) for image, _ in scenes])
    labels = np.stack([label for _, label in scenes]).astype(np.float32)
    mx.random.seed(seed)
    net = get_deeplab(backbone, head, 16, num_classes=5, **spec_fields)
    net.hybridize(static_alloc=True)
    trainer = SegmentationTrainer(net, [mx.cpu()], learning_rate=0.05)
    for step in range(iterations):
        batch = rng.choice(64, 8, replace=False)
        learning_rate = 0.05 * (1 - step / iterations) ** 0.9
        trainer.train_step(mx.nd.array(images[batch]), mx.nd.array(labels[batch]), learning_rate)
    return net, mx.nd.array(images[64:]), labels[64:].astype(np.uint8)
