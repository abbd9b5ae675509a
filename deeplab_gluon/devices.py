"""Turning ``--gpus`` into MXNet contexts, with a clear error for devices that do not exist."""
from __future__ import annotations

import re
from typing import List

import mxnet as mx


def parse_devices(spec: str) -> List[mx.Context]:
    """Contexts for a ``--gpus`` value.

    ``""`` or ``"-1"`` or ``"cpu"``: one CPU context. ``"0,1"``: GPUs 0 and 1.
    ``"cpu:2"``: two CPU contexts (``cpu(0)``, ``cpu(1)``); they share the machine's cores but
    exercise the same split/reduce code paths as several GPUs, which is what tests use.
    Raises ``ValueError`` for malformed values and for GPUs MXNet cannot see.
    """
    spec = str(spec if spec is not None else "").strip().replace(" ", "")
    if spec in ("", "-1", "cpu"):
        return [mx.cpu()]
    match = re.fullmatch(r"cpu:(\d+)", spec)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise ValueError(f"--gpus {spec}: need at least one CPU context")
        return [mx.cpu(i) for i in range(count)]
    if not re.fullmatch(r"\d+(,\d+)*", spec):
        raise ValueError(f"--gpus must be GPU ids like 0,1 (or -1 / empty for CPU, cpu:N for N CPU contexts), "
                         f"got {spec!r}")
    ids = [int(part) for part in spec.split(",")]
    if len(set(ids)) != len(ids):
        raise ValueError(f"--gpus {spec}: a GPU is listed twice")
    available = mx.context.num_gpus()
    missing = [i for i in ids if i >= available]
    if missing:
        raise ValueError(f"--gpus {spec}: GPU {missing[0]} does not exist (MXNet sees {available} GPU"
                         f"{'s' if available != 1 else ''}; is the CUDA wheel mxnet-cu112 installed?)")
    return [mx.gpu(i) for i in ids]
