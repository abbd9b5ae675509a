"""--gpus: a GPU this MXNet build has no kernels for is named in one line at start-up (simulated: no GPU here)."""
import mxnet as mx
import pytest

from deeplab_gluon import devices


def test_a_gpu_without_kernels_is_named_with_what_works_instead(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)

    def no_kernel(ctx):
        raise mx.base.MXNetError("Traceback (most recent call last):\n  ...\nCUDA: no kernel image is available "
                                 "for execution on the device")

    monkeypatch.setattr(devices, "probe_gpu", no_kernel)
    monkeypatch.setattr(devices, "gpu_description", lambda index: ("NVIDIA H100 80GB HBM3", (9, 0)))
    with pytest.raises(ValueError) as raised:
        devices.parse_devices("1")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("--gpus: GPU 1 (NVIDIA H100 80GB HBM3, compute capability 9.0) has no kernels in "
                              "this MXNet build (the PyPI mxnet-cu112 wheel has them for compute capability "
                              "5.0, 6.0, 7.0, 8.0, 8.6")
    assert message.endswith("or the CPU (--gpus -1)")


def test_a_working_gpu_passes_and_cpu_contexts_are_not_probed(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    probed = []
    monkeypatch.setattr(devices, "probe_gpu", probed.append)
    assert devices.parse_devices("0") == [mx.gpu(0)] and probed == [mx.gpu(0)]
    assert devices.parse_devices("cpu:2") == [mx.cpu(0), mx.cpu(1)] and probed == [mx.gpu(0)]

