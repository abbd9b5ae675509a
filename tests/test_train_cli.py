"""train.py end to end: flag validation, SIGKILL + resume, the run folder's contents.

SIGINT / SIGTERM and other faults: test_reliability.py."""
import json
import signal
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon import checkpoint as ckpt
from deeplab_gluon.checkpoint import Checkpoint
from deeplab_gluon.data import make_toy_dataset
from deeplab_gluon.train import main, parse_config
from train_runs import one_thread_env, run_train, start_train, train_flags

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(root, num_train=16, num_val=4, image_size=(40, 40), seed=0)
    return root


@pytest.mark.parametrize("flag, value, message", [
    ("base_architecture", "resnet_v2_51", "--base_architecture: unknown backbone 'resnet_v2_51'"),
    ("dilation_rule", "gluoncv", "--dilation_rule: dilation_rule 'gluoncv' is gluoncv's dilated ResNet-v1b/v1s; "
                                 "resnet101_v2 dilates uniformly only"),
    ("gpus", "0", "--gpus 0: GPU 0 does not exist (MXNet sees 0 GPUs"),
    ("crop_size", "8", "--crop_size 8 is smaller than --output_stride 16"),
    ("data_dir", "/nonexistent/VOCdevkit_aug", "--data_dir /nonexistent/VOCdevkit_aug does not exist"),
    ("resume", "/nonexistent/iter-1.ckpt", "--resume /nonexistent/iter-1.ckpt: no such checkpoint"),
    # issue 28 item 3: the VOC reader fixes its void at 255, so another --ignore_label would do nothing
    ("ignore_label", "0", "--ignore_label 0: the voc dataset marks void pixels 255 itself"),
])
def test_bad_values_fail_at_once_with_one_line(flag, value, message, capsys):
    assert main(["--dataset", "voc", "--data_dir", str(REPO), "--max_iter", "1", f"--{flag}", value]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error


def test_output_stride_outside_the_choices_is_refused(capsys):
    assert main(["--output_stride", "4"]) == 2
    assert capsys.readouterr().err == ("train.py: error: argument --output_stride: invalid choice: 4 "
                                       "(choose from 8, 16, 32)\n")


def test_original_flags_keep_their_meaning():
    config = parse_config(["--base_architecture", "resnet_v2_50", "--aspp_or_vortex", "2", "--freeze_batch_norm",
                           "1", "--gpus", "0,1", "--resume", "-1", "--train_epochs", "3"])
    assert (config.head, config.freeze_bn, config.gpus, config.train_epochs) == ("vortex", True, "0,1", 3)
    assert (config.backbone, config.learning_rate) == ("resnet_v2_50", 7e-3)
    assert parse_config(["--max_iter", "0", "--train_epochs", "0", "--data_dir", str(REPO)]).problems() == [
        "give --max_iter or --train_epochs (both are 0)"]


def _final_weights(output_dir):
    saved = Checkpoint.latest(Path(output_dir) / "checkpoints")
    net, meta = saved.load(), saved.meta
    return meta, {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}


def _wait_for_checkpoint(output_dir, process, at_least):
    deadline = time.time() + 240
    while time.time() < deadline:
        found = Checkpoint.latest(Path(output_dir) / "checkpoints")
        if found is not None and found.iteration >= at_least:
            return found
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_weights_as_an_uninterrupted_run(toy_root, tmp_path):
    """With gradient accumulation (--iter_size 2 of batch 2), so a kill between the passes of an update
    is covered too."""
    accumulate = dict(iter_size=2, batch_size=2)
    straight = tmp_path / "straight"
    result = run_train(train_flags(toy_root, straight, max_iter=12, **accumulate), env=one_thread_env())
    assert result.returncode == 0, result.stderr

    interrupted = tmp_path / "interrupted"
    process = start_train(train_flags(toy_root, interrupted, max_iter=12, **accumulate), env=one_thread_env())
    _wait_for_checkpoint(interrupted, process, at_least=3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed_at = Checkpoint.latest(interrupted / "checkpoints").iteration
    assert killed_at < 12

    # a fresh start into a folder that holds checkpoints is refused rather than overwriting them
    refused = run_train(train_flags(toy_root, interrupted, max_iter=12, **accumulate))
    assert refused.returncode == 2 and "already holds checkpoints: pass --resume last" in refused.stderr

    resumed = run_train(train_flags(toy_root, interrupted, max_iter=12, resume="last", **accumulate),
                        env=one_thread_env())
    assert resumed.returncode == 0, resumed.stderr
    for path in ckpt.list_checkpoints(interrupted / "checkpoints"):
        Checkpoint.read(path)  # every kept checkpoint is complete
    meta_a, weights_a = _final_weights(straight)
    meta_b, weights_b = _final_weights(interrupted)
    assert meta_a["iteration"] == meta_b["iteration"] == 12
    for name in weights_a:
        np.testing.assert_allclose(weights_b[name], weights_a[name], rtol=1e-5, atol=1e-6, err_msg=name)
    records = [json.loads(line) for line in (interrupted / "log.jsonl").read_text().splitlines()]
    starts = [r for r in records if r["type"] == "start"]
    assert [s["iteration"] for s in starts] == [0, killed_at]
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["iteration"] == 12 and 0 <= summary["final"]["mIoU"] <= 1
    assert summary["best_iteration"] == 12 and summary["best_mIoU"] == summary["final"]["mIoU"]
    assert (interrupted / "curves.png").stat().st_size > 1000 and (interrupted / "best.ckpt").is_file()


def test_decoder_flag_trains_deeplabv3plus_and_records_it(toy_root, tmp_path):
    output_dir = tmp_path / "plus"
    done = run_train(train_flags(toy_root, output_dir, max_iter=2, decoder=1, base_architecture="mobilenetv2_1.0"))
    assert done.returncode == 0, done.stderr
    saved = Checkpoint.latest(output_dir / "checkpoints")
    assert saved.spec.decoder and saved.spec.name == "deeplabv3plus_mobilenetv2_1.0_aspp"
    assert saved.load().decoder is not None


def test_pretrained_file_of_another_backbone_is_a_one_line_error(toy_root, tmp_path, capsys):
    from gluoncv.model_zoo import get_model

    zoo = get_model("resnet18_v1b")
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 32, 32)))
    zoo.save_parameters(str(tmp_path / "resnet18_v1b.params"))
    flags = train_flags(toy_root, tmp_path / "run", base_architecture="resnet50_v1s",
                        pre_trained_model=tmp_path / "resnet18_v1b.params")
    assert main(flags) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("train.py: error: --pre_trained_model: ")
    assert "resnet18_v1b.params is a resnet18_v1b parameter file, not resnet50_v1s: " in error
    # a flag the backbone refuses is a usage error, found before any step
    assert main(train_flags(toy_root, tmp_path / "run2", base_architecture="mobilenetv2_1.0", multi_grid="1,2,4")) == 2
    assert "MobileNetV2 has no multi-grid" in capsys.readouterr().err
