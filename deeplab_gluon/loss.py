"""Softmax cross-entropy over the valid pixels of a segmentation batch, optionally weighted per class, with
the auxiliary-head term."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .models.deeplab import split_outputs


def count_valid(label, ignore_label: int = 255) -> int:
    """Number of pixels whose label is not ``ignore_label`` (NDArray or numpy array of any shape)."""
    total = (label != ignore_label).sum()
    return int(total.asscalar() if hasattr(total, "asscalar") else total)


def valid_weight(label, ignore_label: int = 255, class_weights: Optional[Sequence[float]] = None) -> float:
    """The loss denominator of ``label`` (NDArray or numpy array of class indices, any shape): the sum of
    ``class_weights[label]`` over its valid pixels, or their count without class weights. A data-parallel
    trainer adds this over all devices and workers and passes the total as ``num_valid``."""
    if class_weights is None:
        return float(count_valid(label, ignore_label))
    label = label.asnumpy() if hasattr(label, "asnumpy") else np.asarray(label)
    valid = label != ignore_label
    weights = np.asarray(class_weights, dtype=np.float64)
    return float(weights[label[valid].astype(np.int64)].sum())


class SegmentationLoss(gluon.Block):
    """Pixel-wise softmax cross-entropy, averaged over the valid pixels of the whole batch, optionally
    weighted per class.

    ``loss(outputs, label, num_valid=None)``:

    - ``outputs``: logits (N, C, H, W), or a tuple ``(logits, aux_logits)`` of two such arrays;
    - ``label``: (N, H, W) float class indices, ``ignore_label`` for void pixels;
    - ``num_valid``: the denominator, an int or an NDArray of shape (1,); default: the number of valid
      pixels in ``label`` (with ``class_weights``: their summed weight, :func:`valid_weight`). A
      data-parallel trainer passes the total over the whole batch (all devices), so that the per-device
      losses (and gradients) add up exactly to the full-batch average.

    With ``class_weights`` (C,) each valid pixel counts ``w[label]`` times (e.g. ENet weights,
    ``data.class_weights``). Returns an NDArray of shape (1,)::

        loss = sum_valid(w[label] * -log_softmax(logits)[label]) / max(num_valid, 1)
               + aux_weight * sum_valid(w[label] * -log_softmax(aux_logits)[label]) / max(num_valid, 1)

    with ``w = 1`` without class weights, so a batch without valid pixels gives a loss of exactly 0 and
    zero gradients, never NaN. The ``max(., 1)`` guard assumes weights of order 1 or more where pixels
    are valid (ENet weights are at least 1.4).
    """

    def __init__(self, ignore_label: int = 255, aux_weight: float = 0.4,
                 class_weights: Optional[Sequence[float]] = None, **kwargs):
        super().__init__(**kwargs)
        self.ignore_label = ignore_label
        self.aux_weight = aux_weight
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float32)
        if self.class_weights is not None and (self.class_weights.ndim != 1 or not np.isfinite(self.class_weights).all()
                                               or (self.class_weights < 0).any()):
            raise ValueError(f"class_weights must be (C,) finite and non-negative, got {class_weights}")
        self._weights_on = {}  # context -> NDArray copy of class_weights

    def _pixel_weights(self, safe_label, valid):
        """(N, H, W) weight of each pixel: ``class_weights[label]`` (1 without) where valid, 0 elsewhere."""
        if self.class_weights is None:
            return valid
        ctx = safe_label.context
        if ctx not in self._weights_on:
            self._weights_on[ctx] = mx.nd.array(self.class_weights, ctx=ctx, dtype=safe_label.dtype)
        return mx.nd.take(self._weights_on[ctx], safe_label) * valid

    def _summed_nll(self, logits, label, weights):
        """Sum over pixels of ``weights * -log p(label)``; ``label`` has ignored pixels replaced by class 0."""
        if logits.ndim != 4 or logits.shape[:1] + logits.shape[2:] != label.shape:
            raise ValueError(f"logits (N, C, H, W) {logits.shape} do not match label (N, H, W) {label.shape}")
        if self.class_weights is not None and logits.shape[1] != len(self.class_weights):
            raise ValueError(f"{len(self.class_weights)} class weights for logits of {logits.shape[1]} classes")
        log_prob = mx.nd.log_softmax(logits, axis=1)
        picked = mx.nd.pick(log_prob, label, axis=1)  # (N, H, W)
        return -(picked * weights).sum()

    def forward(self, outputs: Union[mx.nd.NDArray, Sequence[mx.nd.NDArray]], label: mx.nd.NDArray,
                num_valid: Optional[Union[int, float, mx.nd.NDArray]] = None) -> mx.nd.NDArray:
        logits, aux_logits = split_outputs(outputs)
        label = label.astype(logits.dtype, copy=False)
        valid = label != self.ignore_label
        safe_label = mx.nd.where(valid, label, mx.nd.zeros_like(label))  # ignored pixels pick class 0, masked
        weights = self._pixel_weights(safe_label, valid)
        if num_valid is None:
            num_valid = weights.sum()
        if isinstance(num_valid, mx.nd.NDArray):
            denominator = mx.nd.maximum(num_valid.astype(logits.dtype).as_in_context(logits.context), 1.0).reshape((1,))
        else:
            denominator = float(max(num_valid, 1))

        loss = self._summed_nll(logits, safe_label, weights) / denominator
        if aux_logits is not None and self.aux_weight:
            loss = loss + self.aux_weight * self._summed_nll(aux_logits, safe_label, weights) / denominator
        return loss
