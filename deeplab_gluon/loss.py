"""Softmax cross-entropy over the valid pixels of a segmentation batch, with the auxiliary-head term."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import mxnet as mx
from mxnet import gluon


def count_valid(label, ignore_label: int = 255) -> int:
    """Number of pixels whose label is not ``ignore_label`` (NDArray or numpy array of any shape)."""
    valid = label != ignore_label
    total = valid.sum()
    return int(total.asscalar() if hasattr(total, "asscalar") else total)


class SegmentationLoss(gluon.Block):
    """Pixel-wise softmax cross-entropy, averaged over the valid pixels of the whole batch.

    ``loss(outputs, label, num_valid=None)``:

    - ``outputs``: logits (N, C, H, W), or a tuple ``(logits, aux_logits)`` of two such arrays;
    - ``label``: (N, H, W) float class indices, ``ignore_label`` for void pixels;
    - ``num_valid``: the denominator, an int or an NDArray of shape (1,); default: the number of valid
      pixels in ``label``. A data-parallel trainer passes the count over the whole batch (all devices), so
      that the per-device losses (and gradients) add up exactly to the full-batch average.

    Returns an NDArray of shape (1,)::

        loss = sum_valid(-log_softmax(logits)[label]) / max(num_valid, 1)
               + aux_weight * sum_valid(-log_softmax(aux_logits)[label]) / max(num_valid, 1)

    so a batch without valid pixels gives a loss of exactly 0 and zero gradients, never NaN.
    """

    def __init__(self, ignore_label: int = 255, aux_weight: float = 0.4, **kwargs):
        super().__init__(**kwargs)
        self.ignore_label = ignore_label
        self.aux_weight = aux_weight

    def _summed_nll(self, logits, label, valid):
        """Sum over valid pixels of -log p(label); ``label`` has ignored pixels replaced by class 0."""
        if logits.ndim != 4 or logits.shape[:1] + logits.shape[2:] != label.shape:
            raise ValueError(f"logits (N, C, H, W) {logits.shape} do not match label (N, H, W) {label.shape}")
        log_prob = mx.nd.log_softmax(logits, axis=1)
        picked = mx.nd.pick(log_prob, label, axis=1)  # (N, H, W)
        return -(picked * valid).sum()

    def forward(self, outputs: Union[mx.nd.NDArray, Sequence[mx.nd.NDArray]], label: mx.nd.NDArray,
                num_valid: Optional[Union[int, float, mx.nd.NDArray]] = None) -> mx.nd.NDArray:
        if isinstance(outputs, (tuple, list)):
            if not 1 <= len(outputs) <= 2:
                raise ValueError(f"outputs must be logits or (logits, aux_logits), got {len(outputs)} arrays")
            logits, aux_logits = outputs[0], (outputs[1] if len(outputs) == 2 else None)
        else:
            logits, aux_logits = outputs, None
        label = label.astype(logits.dtype, copy=False)
        valid = label != self.ignore_label
        safe_label = mx.nd.where(valid, label, mx.nd.zeros_like(label))  # ignored pixels pick class 0, masked
        if num_valid is None:
            num_valid = valid.sum()
        if isinstance(num_valid, mx.nd.NDArray):
            denominator = mx.nd.maximum(num_valid.astype(logits.dtype).as_in_context(logits.context), 1.0)
            denominator = denominator.reshape((1,))
        else:
            denominator = float(max(num_valid, 1))

        loss = self._summed_nll(logits, safe_label, valid) / denominator
        if aux_logits is not None and self.aux_weight:
            loss = loss + self.aux_weight * self._summed_nll(aux_logits, safe_label, valid) / denominator
        return loss
