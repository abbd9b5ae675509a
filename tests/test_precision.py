"""Inference in fp32 (fused), bf16 and int8: same arg-max as plain fp32 on a trained tiny model, any input
size, multi-scale and flip, the int8 cache, and bf16's fall-back on CPUs without the instructions."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon import precision
from deeplab_gluon.inference import predict_probs
from deeplab_gluon.precision import (InferenceNetwork, calibration_images, cpu_has_bf16, int8_cache_prefix,
                                     int8_excluded_layers, main_logits_block, optimize_for_inference)
from deeplab_gluon.static_shapes import StaticShapeExecutors
from tiny_model import tiny_net, trained_tiny_net

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")


@pytest.fixture(scope="module")
def trained():
    """(net, held-out images (16, 3, 48, 48), labels, fp32 class maps of those images)."""
    net, images, labels = trained_tiny_net()
    return net, images, labels, net(images).argmax(axis=1).asnumpy()


@pytest.fixture(scope="module")
def int8_cache(trained, tmp_path_factory):
    """The trained net calibrated on 8 of its held-out images and cached: (prefix, InferenceNetwork)."""
    net, images, _, _ = trained
    prefix = tmp_path_factory.mktemp("int8") / "tiny.ckpt.int8"
    return prefix, optimize_for_inference(net, "int8", calibration_batches=images[:8], cache_prefix=prefix)


def agreement(network, images, reference) -> float:
    return float((network(images).argmax(axis=1).asnumpy() == reference).mean())


def test_fused_fp32_gives_the_plain_outputs_at_any_input_size(trained):
    net, images, _, _ = trained
    fused = optimize_for_inference(net, "fp32")
    assert fused.precision == "fp32" and isinstance(fused.net, StaticShapeExecutors)
    rng = np.random.RandomState(0)
    for shape in [(1, 3, 48, 48), (1, 3, 48, 48), (1, 3, 48, 48), (2, 3, 37, 61), (1, 3, 70, 41)]:
        x = mx.nd.array(rng.normal(size=shape).astype(np.float32))
        expected = net(x).asnumpy()
        got = fused(x).asnumpy()
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # the repeated size got a static, MKL-DNN-fused executor of its own; the others ran the dynamic graph
    assert list(fused.net.executors) == [((1, 3, 48, 48), "cpu(0)")]


@needs_bf16
def test_bf16_agrees_with_fp32_on_the_trained_model(trained):
    net, images, _, reference = trained
    bf16 = optimize_for_inference(net, "bf16")
    assert bf16.precision == "bf16" and bf16(images).dtype == np.float32
    assert agreement(bf16, images, reference) >= 0.97


def test_int8_agrees_with_fp32_on_the_trained_model(trained, int8_cache):
    net, images, _, reference = trained
    _, int8 = int8_cache
    assert int8.precision == "int8" and "calibrated (naive) on 8 images of 48x48" in int8.describe()
    assert agreement(int8, images, reference) >= 0.97
    assert agreement(int8, images, reference) >= 0.97  # second call: the static executor of this size
    other = int8(mx.nd.random.normal(shape=(2, 3, 61, 37)))
    assert other.shape == (2, 5, 61, 37) and other.dtype == np.float32


@pytest.mark.parametrize("wanted", ["fp32", "bf16", "int8"])
def test_multi_scale_and_flip_work_in_every_precision(trained, int8_cache, wanted):
    if wanted == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    net, images, _, _ = trained
    network = int8_cache[1] if wanted == "int8" else optimize_for_inference(net, wanted)
    image = images[:1]
    expected = predict_probs(net, image, scales=(0.75, 1.0, 1.25), flip=True)
    probs = predict_probs(network, image, scales=(0.75, 1.0, 1.25), flip=True)
    assert probs.dtype == np.float32 and probs.shape == expected.shape
    np.testing.assert_allclose(probs.sum(axis=1).asnumpy(), 1.0, atol=1e-4)
    assert (probs.argmax(axis=1) == expected.argmax(axis=1)).mean().asscalar() >= 0.97


def test_a_cached_int8_model_reloads_without_calibrating(trained, int8_cache):
    net, images, _, _ = trained
    prefix, first = int8_cache

    def must_not_calibrate():
        raise AssertionError("calibrated again although the model is cached")

    again = optimize_for_inference(net, "int8", calibration_batches=must_not_calibrate, cache_prefix=prefix)
    assert "from the cache" in again.describe()
    np.testing.assert_array_equal(again(images).asnumpy(), first(images).asnumpy())
    meta = json.loads(Path(f"{prefix}-meta.json").read_text())
    assert meta["calib_mode"] == "naive" and meta["calib_images"] == 8 and meta["int8_keep_fp32"] == ["stem"]


def test_the_cached_int8_pair_loads_with_plain_mxnet(trained, int8_cache, tmp_path):
    _, images, _, _ = trained
    prefix, int8 = int8_cache
    np.save(tmp_path / "images.npy", images.asnumpy())
    script = (f"import mxnet as mx, numpy as np\n"
              f"net = mx.gluon.SymbolBlock.imports('{prefix}-symbol.json', ['data'], '{prefix}-0000.params')\n"
              f"np.save('{tmp_path / 'logits.npy'}', net(mx.nd.array(np.load('{tmp_path / 'images.npy'}'))).asnumpy())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # without this package
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), int8(images).asnumpy(), rtol=1e-5, atol=1e-5)


def test_the_int8_cache_key_follows_what_the_calibrated_model_depends_on(tmp_path):
    checkpoint = tmp_path / "iter-0000010.ckpt"
    checkpoint.write_bytes(b"weights")
    base = int8_cache_prefix(checkpoint, 8, "naive", 32, "toy data/toy train")
    assert base.parent == tmp_path and base.name.startswith("iter-0000010.ckpt.int8-os8-naive32-")
    assert int8_cache_prefix(checkpoint, 8, "naive", 32, "toy data/toy train") == base
    others = [int8_cache_prefix(checkpoint, 16, "naive", 32, "toy data/toy train"),
              int8_cache_prefix(checkpoint, 8, "entropy", 32, "toy data/toy train"),
              int8_cache_prefix(checkpoint, 8, "naive", 16, "toy data/toy train"),
              int8_cache_prefix(checkpoint, 8, "naive", 32, "voc VOCdevkit train_aug"),
              int8_cache_prefix(checkpoint, 8, "naive", 32, "toy data/toy train", keep_fp32=())]
    checkpoint.write_bytes(b"other weights")  # retrained in place
    others.append(int8_cache_prefix(checkpoint, 8, "naive", 32, "toy data/toy train"))
    assert len({base, *others}) == 7


def test_bf16_on_a_cpu_without_the_instructions_says_so_and_runs_fp32(trained, tmp_path):
    net, images, _, reference = trained
    fallback = optimize_for_inference(net, "bf16", has_bf16=False)
    assert (fallback.precision, fallback.requested) == ("fp32", "bf16")
    assert len(fallback.notes) == 1 and "no bfloat16 instructions" in fallback.notes[0] and "running fp32" in \
        fallback.notes[0]
    assert agreement(fallback, images, reference) == 1.0
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert not cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16(cpuinfo)


def test_vortex_runs_in_every_precision_at_any_size():
    net = tiny_net(num_classes=4, head="vortex", aux=True, logit_scale=10.0)
    rng = np.random.RandomState(1)
    calibration = mx.nd.array(rng.normal(size=(4, 3, 64, 64)).astype(np.float32))
    for wanted in ("fp32", "int8") + (("bf16",) if cpu_has_bf16() else ()):
        network = optimize_for_inference(net, wanted, calibration_batches=calibration)
        assert network.precision == wanted
        for shape in [(1, 3, 64, 64), (2, 3, 45, 77)]:
            x = mx.nd.array(rng.normal(size=shape).astype(np.float32))
            out, expected = network(x), net(x)[0]
            assert out.shape == expected.shape and out.dtype == np.float32
            assert (out.argmax(axis=1) == expected.argmax(axis=1)).mean().asscalar() >= 0.9


def test_int8_leaves_the_named_parts_in_fp32():
    net = tiny_net(num_classes=3, aux=True)
    symbol = main_logits_block(net)(mx.sym.var("data"))
    stem = int8_excluded_layers(symbol, ("stem",))
    assert [name.split("_", 1)[1] for name in stem] == ["batchnorm0_fwd", "conv0_fwd"]  # input BN, first conv
    classifier = int8_excluded_layers(symbol, ("classifier",))
    assert len(classifier) == 1 and "classifier" in classifier[0] and "convbnrelu" not in classifier[0]
    pooling = int8_excluded_layers(symbol, ("image_pooling",))
    assert pooling and all("imagepooling" in name for name in pooling)
    assert not any("aux" in name or "fcn" in name for name in stem + classifier + pooling)  # no auxiliary head
    with pytest.raises(precision.PrecisionError, match="unknown network parts"):
        int8_excluded_layers(symbol, ("decoder",))


def test_calibration_images_are_spread_over_the_set_and_padded_to_one_size():
    class Sizes:
        shapes = [(20, 30), (25, 20), (10, 10), (30, 30), (5, 8)]

        def __len__(self):
            return len(self.shapes)

        def __getitem__(self, index):
            height, width = self.shapes[index]
            return np.full((3, height, width), index + 1, np.float32), None

    batch = calibration_images(Sizes(), 3).asnumpy()
    assert batch.shape == (3, 3, 20, 30)  # images 0, 2 and 4, padded to their largest height and width
    assert [image[0, 0, 0] for image in batch] == [1, 3, 5]
    assert batch[2, :, 5:, :].max() == 0 and batch[2, :, :, 8:].max() == 0


def test_static_executors_are_made_for_repeated_shapes_only_and_never_remade():
    built = []

    def specialize(x):
        built.append(x.shape)
        return lambda y: y * 2

    executors = StaticShapeExecutors(lambda y: y * 1, specialize, max_shapes=1, min_calls=2)
    a, b = mx.nd.ones((1, 2)), mx.nd.ones((1, 3))
    assert executors(a).sum().asscalar() == 2 and not built  # first call: the dynamic graph
    assert executors(a).sum().asscalar() == 4 and built == [(1, 2)]
    for _ in range(3):
        assert executors(b).sum().asscalar() == 3  # no room left: dynamic
    executors(a)
    assert built == [(1, 2)]


def test_unknown_precisions_and_modes_are_refused(trained):
    net = trained[0]
    with pytest.raises(precision.PrecisionError, match="precision must be one of fp32, bf16, int8"):
        optimize_for_inference(net, "fp16")
    with pytest.raises(precision.PrecisionError, match="calibration mode must be one of naive, entropy"):
        optimize_for_inference(net, "int8", calib_mode="minmax")
    with pytest.raises(precision.PrecisionError, match="int8 needs calibration images"):
        optimize_for_inference(net, "int8")
    assert isinstance(optimize_for_inference(net, "fp32"), InferenceNetwork)
