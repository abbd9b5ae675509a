"""Damaged checkpoints (issue 18, item 2) and exit codes that agree across the tools (item 7)."""
import collections
import zipfile

import numpy as np
import pytest

from deeplab_gluon import checkpoint as ckpt
from deeplab_gluon import evaluate, export, predict, train
from deeplab_gluon.checkpoint import Checkpoint, CheckpointError, checkpoint_name
from deeplab_gluon.data import make_toy_dataset, write_image
from tiny_model import save_tiny_checkpoint, tiny_net


def flip_a_byte_of_the_weights(path):
    """One flipped byte inside ``net.params``: the zip stays valid, the member's CRC-32 does not match."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("net.params")
    data[info.header_offset + len(info.FileHeader()) + 1000] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory):
    """A toy run folder with an intact checkpoint at iteration 3 and a bit-flipped one at iteration 6."""
    root = tmp_path_factory.mktemp("damaged")
    make_toy_dataset(root / "toy", num_train=4, num_val=1, image_size=(32, 32), seed=0)
    net = tiny_net(num_classes=5)
    config = train.parse_config(["--dataset", "toy", "--data_dir", str(root / "toy"), "--base_architecture",
                                 "resnet_v2_18", "--crop_size", "32", "--batch_size", "2", "--max_iter", "8",
                                 "--num_workers", "0", "--val_split", "", "--progress", "0",
                                 "--output_dir", str(root / "run")]).to_dict()
    for iteration in (3, 6):
        path = save_tiny_checkpoint(root / "run", net, ["c"] * 5, iteration=iteration)
        Checkpoint.write(path, net, None, dict(Checkpoint.read(path).meta, config=config, epoch=iteration // 2))
    flip_a_byte_of_the_weights(root / "run" / "checkpoints" / checkpoint_name(6))
    write_image(root / "image.jpg", np.zeros((20, 20, 3), np.uint8))
    return root


def test_resume_last_falls_back_past_a_bit_flipped_newest_checkpoint(damaged_run, capsys):
    from deeplab_gluon.trainer import starting_point

    checkpoints = damaged_run / "run" / "checkpoints"
    start = starting_point("last", "", checkpoints)
    assert start.resume.iteration == 3
    assert capsys.readouterr().err == (f"warning: skipped checkpoint iter-0000006.ckpt: "
                                       f"{checkpoints / 'iter-0000006.ckpt'} is damaged: net.params fails its checksum\n")


@pytest.mark.parametrize("job, argv", [
    (evaluate, ["--checkpoint", "{bad}", "--output", "{tmp}/x.json"]),
    (predict, ["--checkpoint", "{bad}", "--input", "{root}/image.jpg", "--output_dir", "{tmp}/out"]),
    (export, ["--checkpoint", "{bad}", "--output_dir", "{tmp}/out", "--format", "symbol"]),
    (train, ["--dataset", "toy", "--data_dir", "{root}/toy", "--max_iter", "1", "--init_from", "{bad}",
             "--output_dir", "{tmp}/run"]),
])
def test_a_bit_flipped_checkpoint_is_one_line_and_exit_2_in_every_tool(damaged_run, tmp_path, capsys, job, argv):
    bad = damaged_run / "run" / "checkpoints" / checkpoint_name(6)
    argv = [a.format(bad=bad, root=damaged_run, tmp=tmp_path) for a in argv]
    assert job.main(argv) == 2
    flag = "--init_from" if job is train else "--checkpoint"
    assert capsys.readouterr().err == (f"{job.PROG}: error: {flag}: {bad} is damaged: net.params fails its checksum\n")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_newest_intact_checkpoint_of_a_folder_is_used_and_the_skipped_one_named(damaged_run, tmp_path, capsys):
    code = predict.main(["--checkpoint", str(damaged_run / "run"), "--input", str(damaged_run / "image.jpg"),
                         "--output_dir", str(tmp_path / "out"), "--progress", "0"])
    assert code == 0 and (tmp_path / "out" / "image.png").is_file()
    assert "warning: skipped checkpoint iter-0000006.ckpt: " in capsys.readouterr().err


def test_max_iter_wins_over_train_epochs_and_says_so(monkeypatch, capsys):
    import deeplab_gluon.trainer as trainer

    monkeypatch.setattr(trainer, "run_training", lambda config: {})
    assert train.main(["--dataset", "toy", "--max_iter", "30", "--train_epochs", "3"]) == 0
    assert capsys.readouterr().out == "--max_iter 30 sets the length of training; --train_epochs 3 is ignored\n"


def test_a_checkpoint_is_not_started_without_room_for_it(tmp_path, monkeypatch):
    net = tiny_net(num_classes=3)
    kept = Checkpoint.write(tmp_path / checkpoint_name(1), net, None, {"iteration": 1}).path
    size = kept.stat().st_size
    assert size <= ckpt.estimated_size(net, None) < size + (2 << 20)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda folder: usage(10 * size, 9 * size, size))
    with pytest.raises(CheckpointError, match=(
            rf"not enough free space for checkpoint {tmp_path / checkpoint_name(2)}: writing it needs about "
            rf"\d+ MiB, {tmp_path} has \d+ MiB free; the previous checkpoint files are intact")):
        Checkpoint.write(tmp_path / checkpoint_name(2), net, None, {"iteration": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(1)]


def test_resume_n_does_not_depend_on_newer_checkpoints_being_intact(tmp_path, capsys):
    """Issue 28 item 1: --resume 1 finds epoch 1's checkpoint though the newer one is bit-flipped."""
    net = tiny_net(num_classes=5)
    for iteration in (3, 6):
        path = save_tiny_checkpoint(tmp_path / "run", net, ["c"] * 5, iteration=iteration)
        Checkpoint.write(path, net, None, dict(Checkpoint.read(path).meta, epoch=iteration // 3, end_of_epoch=True))
    checkpoints = tmp_path / "run" / "checkpoints"
    flip_a_byte_of_the_weights(checkpoints / checkpoint_name(6))
    assert Checkpoint.of_epoch(checkpoints, 1).iteration == 3
    (checkpoints / checkpoint_name(6)).write_bytes(b"truncated")  # its meta unreadable too: skipped, named
    capsys.readouterr()
    assert Checkpoint.of_epoch(checkpoints, 1).iteration == 3
    assert "warning: skipped checkpoint iter-0000006.ckpt" in capsys.readouterr().err
    flip_a_byte_of_the_weights(checkpoints / checkpoint_name(3))  # the one asked for is damaged: refused
    with pytest.raises(CheckpointError, match="iter-0000003.ckpt is damaged"):
        Checkpoint.of_epoch(checkpoints, 1)
