"""Running a trained network on whole images: single scale, multi-scale and flip, over devices."""
from __future__ import annotations

from typing import Sequence

import mxnet as mx
import numpy as np
from tqdm import tqdm

from .metrics import ConfusionMatrix
from .models.deeplab import split_outputs


def main_logits(output) -> mx.nd.NDArray:
    """The main logits (N, C, H, W) of a network's output: the first of (main, auxiliary), or the output."""
    return split_outputs(output)[0]


def image_to_batch(image: np.ndarray, ctx: mx.Context = None) -> mx.nd.NDArray:
    """(H, W, 3) uint8 RGB image -> normalised (1, 3, H, W) float32 batch on ``ctx``, as in evaluation."""
    from .data.transforms import normalize_image

    return mx.nd.array(normalize_image(image)[None], ctx=ctx or mx.cpu())


def predict_probs(net, image: mx.nd.NDArray, scales: Sequence[float] = (1.0,), flip: bool = False) -> mx.nd.NDArray:
    """Class probabilities for one normalised image, averaged over scales and flips.

    ``image`` (1, 3, H, W) on the device to run on -> probabilities (1, C, H, W) on that device.
    At each scale the image is resized bilinearly, the softmax is taken and resized back to
    H x W; with ``flip`` the left-right mirrored image is scored too and mirrored back. With
    ``scales=(1.0,)`` and no flip this is exactly ``softmax(net(image))``.
    """
    height, width = image.shape[2:]
    total, count = None, 0
    for scale in scales:
        scaled = image if scale == 1.0 else mx.nd.contrib.BilinearResize2D(
            image, height=max(1, int(round(height * scale))), width=max(1, int(round(width * scale))))
        for mirrored in ((False, True) if flip else (False,)):
            probs = mx.nd.softmax(main_logits(net(scaled.flip(axis=3) if mirrored else scaled)), axis=1)
            if mirrored:
                probs = probs.flip(axis=3)
            if scale != 1.0:
                probs = mx.nd.contrib.BilinearResize2D(probs, height=height, width=width)
            total = probs if total is None else total + probs
            count += 1
    return total / count if count > 1 else total


def class_map(scores: mx.nd.NDArray) -> mx.nd.NDArray:
    """Scores (1, C, H, W), logits or probabilities -> arg-max class map (H, W) as int32, same device."""
    return mx.nd.argmax(scores, axis=1)[0].astype("int32")


def predict_labels(net, image: mx.nd.NDArray, scales: Sequence[float] = (1.0,), flip: bool = False) -> mx.nd.NDArray:
    """Arg-max class map (H, W) as int32 on the image's device; see :func:`predict_probs`."""
    if tuple(scales) == (1.0,) and not flip:  # no averaging: skip the softmax
        return class_map(main_logits(net(image)))
    return class_map(predict_probs(net, image, scales, flip))


def evaluate_dataset(net, dataset, ctxs: Sequence[mx.Context], num_classes: int, ignore_label: int = 255,
                     scales: Sequence[float] = (1.0,), flip: bool = False, num_workers: int = 0,
                     progress: bool = True, desc: str = "eval", confusion=None, on_image=None):
    """Score ``net`` on every image of ``dataset`` at full resolution, batch 1.

    ``dataset`` yields ``(image (3, H, W) float32 normalised, label (H, W))``. Images go round
    robin to ``ctxs``, which run concurrently. Returns the accumulated
    :class:`~deeplab_gluon.metrics.ConfusionMatrix` (pass one to add to it). ``on_image(index,
    prediction (H, W) int32, label (H, W), counts (C, C))``, when given, is called for each image in
    order with its own confusion counts (e.g. for per-image scores).
    """
    confusion = confusion or ConfusionMatrix(num_classes, ignore_label)
    loader = mx.gluon.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    pending = []
    done = [0]  # images scored so far: the index passed to on_image

    def flush():
        for prediction, label in pending:
            prediction = prediction.asnumpy()
            counts = confusion.update(prediction, label)
            if on_image is not None:
                on_image(done[0], prediction, label, counts)
            done[0] += 1
        bar.update(len(pending))
        bar.set_postfix(mIoU=f"{confusion.miou():.4f}")
        pending.clear()

    try:
        # One image per context, all queued before any result is read: MXNet runs them concurrently.
        for image, label in loader:
            ctx = ctxs[len(pending)]
            pending.append((predict_labels(net, image.as_in_context(ctx), scales, flip), label[0].asnumpy()))
            if len(pending) == len(ctxs):
                flush()
        flush()
    finally:
        bar.close()
    return confusion
