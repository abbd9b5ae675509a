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
    if match := re.fullmatch(r"cpu:(\d+)", spec):
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
    if missing := [i for i in ids if i >= available]:
        raise ValueError(f"--gpus {spec}: GPU {missing[0]} does not exist (MXNet sees {available} GPU"
                         f"{'s' if available != 1 else ''}; is the CUDA wheel mxnet-cu112 installed?)")
    ctxs = [mx.gpu(i) for i in ids]
    check_gpus(ctxs)
    return ctxs


# The PyPI CUDA wheel's kernels (its build's CUDA_ARCH "5.0;6.0;7.0;8.0;8.6", no PTX): a GPU runs them when
# its compute capability has the same major version and at least the minor one of a built target.
WHEEL_ARCHITECTURES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))


def gpu_description(index: int):
    """``(name, (major, minor))`` of GPU ``index`` from the CUDA driver, or ``(None, None)`` if it cannot tell."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(128)
        if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(device), index) \
                or cuda.cuDeviceGetName(name, 128, device) \
                or cuda.cuDeviceComputeCapability(ctypes.byref(major), ctypes.byref(minor), device):
            return None, None
        return name.value.decode(errors="replace"), (major.value, minor.value)
    except OSError:
        return None, None


def probe_gpu(ctx: mx.Context) -> None:
    """Run one tiny convolution on ``ctx``, so a GPU this MXNet build has no kernels for fails at start-up."""
    data = mx.nd.ones((1, 1, 4, 4), ctx=ctx)
    mx.nd.Convolution(data, mx.nd.ones((1, 1, 3, 3), ctx=ctx), kernel=(3, 3), num_filter=1, no_bias=True).wait_to_read()


def check_gpus(ctxs: List[mx.Context]) -> None:
    """``ValueError`` in one line naming the GPU, its compute capability and what works instead, when
    MXNet cannot run on it (e.g. an H100, compute capability 9.0, with the PyPI ``mxnet-cu112`` wheel)."""
    for ctx in [ctx for ctx in ctxs if ctx.device_type == "gpu"]:
        try:
            probe_gpu(ctx)
        except mx.base.MXNetError as err:
            name, capability = gpu_description(ctx.device_id)
            what = f"GPU {ctx.device_id}" + (f" ({name}, compute capability {capability[0]}.{capability[1]})"
                                              if name else "")
            if "no kernel image" not in str(err) and "invalid device function" not in str(err):
                raise ValueError(f"--gpus: {what} cannot run MXNet: {str(err).strip().splitlines()[-1]}") from None
            built = ", ".join(f"{major}.{minor}" for major, minor in WHEEL_ARCHITECTURES)
            raise ValueError(f"--gpus: {what} has no kernels in this MXNet build (the PyPI mxnet-cu112 wheel has them "
                             f"for compute capability {built} and newer minor versions of those: Maxwell to Ada); "
                             f"use such a GPU, an MXNet built from source for this one, or the CPU (--gpus -1)") from None
