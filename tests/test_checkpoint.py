"""Checkpoints: round trip, atomic replacement, refusal of mismatched models, pruning."""
import errno
import zipfile

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from deeplab_gluon import checkpoint as ckpt
from deeplab_gluon.checkpoint import Checkpoint
from deeplab_gluon.models import ModelSpec, get_deeplab

SPEC = ModelSpec("resnet18_v2", "aspp", num_classes=3)
MODEL = SPEC.to_dict()


def _net_and_trainer(seed=0):
    mx.random.seed(seed)
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=3)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    return net, trainer


def _one_step(net, trainer):
    with mx.autograd.record():
        loss = net(mx.nd.random.uniform(shape=(2, 3, 32, 32))).mean()
    loss.backward()
    trainer.step(1)


def _params(net):
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}


def test_round_trip_restores_weights_momentum_and_meta(tmp_path):
    net, trainer = _net_and_trainer()
    _one_step(net, trainer)
    path = Checkpoint.write(tmp_path / ckpt.checkpoint_name(1), net, trainer, {"iteration": 1, "model": MODEL}).path
    assert path.name == "iter-0000001.ckpt"

    other, other_trainer = _net_and_trainer(seed=1)
    saved = Checkpoint.open(path)
    saved.load_into(other, other_trainer, expect=SPEC)
    assert saved.iteration == 1 and saved.spec == SPEC
    for name, value in _params(net).items():
        np.testing.assert_array_equal(_params(other)[name], value)
    # momentum restored: the next identical step gives identical weights
    mx.random.seed(5)
    _one_step(net, trainer)
    mx.random.seed(5)
    _one_step(other, other_trainer)
    for name, value in _params(net).items():
        np.testing.assert_allclose(_params(other)[name], value, rtol=1e-6, atol=1e-7)


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    net, trainer = _net_and_trainer()
    path = tmp_path / "iter-0000001.ckpt"
    Checkpoint.write(path, net, trainer, {"iteration": 1})
    before = path.read_bytes()

    real_write = zipfile.ZipFile.write

    def disk_full(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", disk_full)
    with pytest.raises(ckpt.CheckpointError, match="No space left on device.*previous checkpoint files are intact"):
        Checkpoint.write(path, net, trainer, {"iteration": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter-0000001.ckpt"]  # no partial or staging left


def test_mismatched_model_is_refused_with_what_differs(tmp_path):
    net, trainer = _net_and_trainer()
    saved = Checkpoint.write(tmp_path / "a.ckpt", net, trainer, {"iteration": 1, "model": MODEL})
    wanted = SPEC.replace(num_classes=21, head="vortex")
    with pytest.raises(ckpt.CheckpointError, match=r"head: checkpoint has 'aspp', this run has 'vortex'; "
                                                   r"num_classes: checkpoint has 3, this run has 21"):
        saved.load_into(get_deeplab("resnet18_v2", "vortex", 16, num_classes=21), expect=wanted)


def test_backbone_only_load_takes_backbone_weights(tmp_path):
    net, trainer = _net_and_trainer()
    saved = Checkpoint.write(tmp_path / "a.ckpt", net, trainer, {"iteration": 1, "model": MODEL})
    other = get_deeplab("resnet18_v2", "vortex", 16, num_classes=21)
    head_before = other.head.fusion.classifier.weight.data().asnumpy()
    saved.load_into(other, expect=SPEC.replace(num_classes=21), backbone_only=True)
    np.testing.assert_array_equal(other.backbone.features[1].weight.data().asnumpy(),
                                  net.backbone.features[1].weight.data().asnumpy())
    np.testing.assert_array_equal(other.head.fusion.classifier.weight.data().asnumpy(), head_before)
    with pytest.raises(ckpt.CheckpointError, match="backbone parameters differ"):
        saved.load_into(get_deeplab("resnet34_v2", "aspp", 16, num_classes=3), backbone_only=True)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    net, trainer = _net_and_trainer()
    path = Checkpoint.write(tmp_path / "iter-0000002.ckpt", net, trainer, {"iteration": 2}).path
    truncated = tmp_path / "iter-0000003.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        Checkpoint.read(truncated)
    assert Checkpoint.latest(tmp_path).path == path  # the newest complete one
    foreign = tmp_path / "foreign.ckpt"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ckpt.CheckpointError, match="not a deeplab-gluon checkpoint"):
        Checkpoint.read(foreign)


def test_prune_keeps_the_newest(tmp_path):
    for iteration in (5, 10, 15, 20):
        (tmp_path / ckpt.checkpoint_name(iteration)).write_bytes(b"x")
    (tmp_path / ".iter-0000025.ckpt.partial").write_bytes(b"half")
    for kept_or_not in ("iter-0000005.ckpt", "iter-0000020.ckpt"):  # cached int8 models go with their checkpoint
        for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
            (tmp_path / f"{kept_or_not}.int8-os16-naive32-0a1b2c3d4e{suffix}").write_bytes(b"x")
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "iter-0000015.ckpt", "iter-0000020.ckpt", "iter-0000020.ckpt.int8-os16-naive32-0a1b2c3d4e-0000.params",
        "iter-0000020.ckpt.int8-os16-naive32-0a1b2c3d4e-meta.json",
        "iter-0000020.ckpt.int8-os16-naive32-0a1b2c3d4e-symbol.json"]


def test_skipped_checkpoints_are_named_with_the_reason(tmp_path, capsys):
    net, trainer = _net_and_trainer()
    good = Checkpoint.write(tmp_path / "iter-0000002.ckpt", net, trainer, {"iteration": 2, "model": MODEL})
    (tmp_path / "iter-0000004.ckpt").write_bytes(b"not a zip")
    assert Checkpoint.latest(tmp_path).path == good.path
    assert capsys.readouterr().err == ("warning: skipped checkpoint iter-0000004.ckpt: cannot read checkpoint "
                                       f"{tmp_path / 'iter-0000004.ckpt'}: File is not a zip file\n")


def test_a_flipped_byte_is_refused_before_loading(tmp_path):
    net, trainer = _net_and_trainer()
    path = Checkpoint.write(tmp_path / "iter-0000002.ckpt", net, trainer, {"iteration": 2, "model": MODEL}).path
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("net.params")
    data[info.header_offset + len(info.FileHeader()) + 100] ^= 0xFF  # inside the stored net.params
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="damaged: net.params fails its checksum"):
        Checkpoint.open(path)


def test_the_spec_round_trips_and_old_descriptions_load():
    spec = ModelSpec("resnet_v2_50", "vortex", 5, 8, multi_grid=(1, 2, 4), vortex_module="b", aux=True)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["backbone"] == "resnet50_v2" and spec.to_dict()["multi_grid"] == [1, 2, 4]
    # the first round's checkpoints stored this (no vortex_module, output_stride or multi_grid in the oldest)
    old = ModelSpec.from_dict({"backbone": "resnet18_v2", "head": "aspp", "num_classes": 21, "aux": False})
    assert old == ModelSpec("resnet18_v2", "aspp", 21, 16, (), "A", False)
    # checkpoints written before head_variant and dilation_rule existed keep building the same network
    before_gluoncv = {"backbone": "resnet50_v1s", "head": "vortex", "num_classes": 5, "output_stride": 8,
                      "multi_grid": [1, 2, 4], "vortex_module": "B", "aux": True, "decoder": True}
    assert ModelSpec.from_dict(before_gluoncv).head_variant == "deeplab"
    assert ModelSpec.from_dict(before_gluoncv).dilation_rule == "uniform"
    assert ModelSpec.from_dict(before_gluoncv).to_dict() == dict(before_gluoncv, head_variant="deeplab",
                                                                 dilation_rule="uniform", separable=False)
    with pytest.raises(ValueError, match="written by a newer version"):
        ModelSpec.from_dict(dict(spec.to_dict(), backbone_width=2))


def test_a_rewritten_checkpoint_drops_its_stale_evaluations(tmp_path):
    net, trainer = _net_and_trainer()
    path = Checkpoint.write(tmp_path / "iter-0000002.ckpt", net, trainer, {"iteration": 2, "model": MODEL}).path
    report = tmp_path / "iter-0000002.ckpt.eval-val.json"
    report.write_text("{}")
    other = tmp_path / "iter-0000020.ckpt.eval-val.json"  # another checkpoint's: kept
    other.write_text("{}")
    Checkpoint.write(path, net, trainer, {"iteration": 2, "model": MODEL})
    assert not report.exists() and other.exists()
