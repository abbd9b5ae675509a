"""A resumed run keeps the flags its exact continuation depends on (issue 18, item 5)."""
import json

import pytest

from deeplab_gluon.cpu_threads import current_choice

from deeplab_gluon.checkpoint import Checkpoint
from deeplab_gluon.data import make_toy_dataset
from deeplab_gluon.train import main, parse_config
from deeplab_gluon.trainer import resumed_config_changes
from train_runs import train_flags


def test_changes_are_named_by_their_command_line_flags():
    first = parse_config(["--dataset", "toy", "--base_architecture", "resnet_v2_18", "--initial_learning_rate", "0.01",
                          "--lr_steps", "0.5,0.8"])
    same = parse_config(["--dataset", "toy", "--base_architecture", "resnet18_v2", "--initial_learning_rate", "0.01",
                         "--lr_steps", "0.5,0.8", "--train_split", "train", "--num_workers", "0", "--gpus", "-1",
                         "--val_every", "3", "--keep_checkpoints", "1"])  # spellings and run-only flags
    assert same.recipe_changes(json.loads(json.dumps(first.to_dict()))) == []
    other = parse_config(["--dataset", "toy", "--base_architecture", "resnet_v2_34", "--initial_learning_rate", "0.02",
                          "--lr_steps", "0.5,0.9", "--freeze_batch_norm", "1", "--seed", "3"])
    assert other.recipe_changes(first.to_dict()) == [
        "--base_architecture resnet18_v2 (now resnet34_v2)", "--freeze_batch_norm 0 (now 1)",
        "--initial_learning_rate 0.01 (now 0.02)", "--lr_steps 0.5,0.8 (now 0.5,0.9)", "--seed 0 (now 3)"]


def test_the_first_rounds_config_names_are_read():
    """Checkpoints written before the refactor stored the config under the original flag names."""
    old = {"dataset": "voc", "train_split": "train_aug", "base_architecture": "resnet_v2_101", "aspp_or_vortex": 2,
           "freeze_batch_norm": True, "initial_learning_rate": 1e-3, "pre_trained_model": "zoo.params",
           "batch_size": 8, "crop_size": 513, "max_iter": 30000}
    now = ["--base_architecture", "resnet_v2_101", "--aspp_or_vortex", "2", "--freeze_batch_norm", "1",
           "--batch_size", "8", "--max_iter", "30000"]
    assert parse_config(now + ["--initial_learning_rate", "1e-3"]).recipe_changes(old) == []
    assert parse_config(now + ["--aspp_or_vortex", "1"]).recipe_changes(old) == [
        "--aspp_or_vortex vortex (now aspp)", "--initial_learning_rate 0.001 (now 0.007)"]


def test_a_checkpoint_without_its_config_is_refused_unless_allowed(tmp_path):
    saved = Checkpoint(tmp_path / "iter-0000003.ckpt", {"iteration": 3, "model": {}})
    with pytest.raises(Exception, match="records no training config, so its flags cannot be compared"):
        resumed_config_changes(parse_config([]), saved)
    assert resumed_config_changes(parse_config(["--allow_config_change", "1"]), saved) == [
        "(the checkpoint records no training config)"]


@pytest.mark.slow
def test_resume_with_other_flags_is_refused_and_every_segment_keeps_its_config(tmp_path, capsys):
    make_toy_dataset(tmp_path / "toy", num_train=4, num_val=1, image_size=(40, 40), seed=0)
    run = tmp_path / "run"
    first = train_flags(tmp_path / "toy", run, max_iter=2, batch_size=2, checkpoint_every=1, val_split="")
    assert main(first) == 0
    config = (run / "config.json").read_text()
    threads = json.loads(config)["cpu_threads"]  # the thread choice is printed and recorded
    assert threads["threads"] == current_choice().threads and threads["line"].startswith("MXNet CPU threads: ")
    assert threads["line"] in capsys.readouterr().out

    changed = train_flags(tmp_path / "toy", run, max_iter=3, batch_size=2, checkpoint_every=1, val_split="",
                          resume="last", crop_size=40, initial_learning_rate=0.02)
    assert main(changed) == 2
    assert capsys.readouterr().err == (
        f"train.py: error: --resume: {run / 'checkpoints' / 'iter-0000002.ckpt'} was trained with other settings: "
        f"--crop_size 32 (now 40), --initial_learning_rate 0.01 (now 0.02), --max_iter 2 (now 3); a resumed run "
        f"keeps them to continue exactly: pass --allow_config_change 1 to change them anyway, or start a new run "
        f"from its weights with --init_from and another --output_dir\n")
    assert (run / "config.json").read_text() == config and not list(run.glob("config-resume-*"))

    assert main(changed + ["--allow_config_change", "1"]) == 0
    assert "--allow_config_change 1: resuming at iteration 2 with --crop_size 32 (now 40)" in capsys.readouterr().out
    assert (run / "config.json").read_text() == config  # the first segment's record stays
    second = json.loads((run / "config-resume-0000002.json").read_text())
    assert (second["crop_size"], second["learning_rate"], second["max_iter"]) == (40, 0.02, 3)
    starts = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"start"' in line]
    assert [s["config_file"] for s in starts] == ["config.json", "config-resume-0000002.json"]
    assert Checkpoint.latest(run / "checkpoints").meta["config"]["crop_size"] == 40


def test_phase_two_into_phase_ones_folder_is_refused_with_the_command_that_does_it(tmp_path):
    """The recipe's phase 2 (OS8, frozen BatchNorm) resumed into phase 1's folder would leave best.ckpt an
    OS16 model in a folder that says OS8 (issue 19, item 4); refused even with --allow_config_change."""
    phase1 = parse_config(["--dataset", "toy", "--output_stride", "16", "--output_dir", str(tmp_path / "phase1")])
    saved = Checkpoint(tmp_path / "phase1" / "checkpoints" / "iter-0000003.ckpt",
                       {"iteration": 3, "model": {}, "config": phase1.to_dict()})
    for allow in ("0", "1"):
        phase2 = parse_config(["--dataset", "toy", "--output_stride", "8", "--freeze_batch_norm", "1", "--resume",
                               "last", "--output_dir", str(tmp_path / "phase1"), "--allow_config_change", allow])
        with pytest.raises(Exception) as refused:
            resumed_config_changes(phase2, saved)
        assert str(refused.value) == (
            "--resume: --output_stride 16 (now 8), --freeze_batch_norm 0 (now 1) starts a new phase of the recipe, "
            f"which goes into its own folder: pass --init_from {tmp_path / 'phase1'} --output_dir "
            f"{tmp_path / 'phase1_phase2'} instead of --resume (as sh_train.sh does)")
