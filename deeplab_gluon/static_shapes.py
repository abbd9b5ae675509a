"""One static-shape executor per frequent input size, for graphs that are only fast at a fixed shape.

MXNet's oneDNN graphs (the MKL-DNN-fused fp32 network, the int8 network) accept any input size, but
they are fast only when hybridized with ``static_shape=True`` and fed that one shape: with changing
sizes the fused fp32 graph is slower than the plain one and int8 loses about half its speed
(docs/performance.md). A static executor fed another shape re-plans all its memory, so each shape
gets its own, sharing the parameters.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, Tuple

import mxnet as mx

ShapeKey = Tuple[Tuple[int, ...], str]


class StaticShapeExecutors:
    """Call ``dynamic`` for an input, or the static executor made for its shape.

    ``specialize(x)`` builds an executor for ``x``'s shape (and device). A shape gets one on its
    ``min_calls``-th call, so sizes seen once (a folder of odd-sized photos) never pay the build
    (about one extra forward pass), and at most ``max_shapes`` shapes get one: the first to reach
    ``min_calls``. None is ever dropped, which bounds memory (each holds its own buffers) and never
    rebuilds. ``max_shapes=0`` always runs ``dynamic``.
    """

    def __init__(self, dynamic: Callable[[mx.nd.NDArray], mx.nd.NDArray],
                 specialize: Callable[[mx.nd.NDArray], Callable[[mx.nd.NDArray], mx.nd.NDArray]],
                 max_shapes: int = 4, min_calls: int = 2):
        self.dynamic, self.specialize = dynamic, specialize
        self.max_shapes, self.min_calls = max_shapes, min_calls
        self.executors: Dict[ShapeKey, Callable] = {}
        self.calls: Counter = Counter()

    def __call__(self, x: mx.nd.NDArray) -> mx.nd.NDArray:
        key = (tuple(x.shape), str(x.context))
        executor = self.executors.get(key)
        if executor is None:
            self.calls[key] += 1
            if self.calls[key] >= self.min_calls and len(self.executors) < self.max_shapes:
                executor = self.executors[key] = self.specialize(x)
            else:
                executor = self.dynamic
        return executor(x)
