"""--config FILE: flag values from JSON, the command line over them, one-line errors naming the file and key;
the shipped recipes load and their values reach a run's config.json."""
import json
from pathlib import Path

import pytest

from deeplab_gluon import evaluate, predict
from deeplab_gluon.cli import UsageError, parse_config as parse_job_config
from deeplab_gluon.train import TrainConfig, main, parse_config
from deeplab_gluon.trainer import make_lr_schedule
from train_runs import REPO, run_train, train_flags

RECIPES = REPO / "recipes"
CAMVID = REPO.parent / "shared" / "camvid"


def write(path: Path, values) -> Path:
    path.write_text(json.dumps(values))
    return path


def test_file_values_and_command_line_precedence(tmp_path):
    config = write(tmp_path / "a.json", {"base_architecture": "resnet_v2_18", "crop_size": 64, "decoder": True,
                                         "scale_range": [0.5, 1.5], "aspp_or_vortex": 2, "color_jitter": 1})
    parsed = parse_config(["--config", str(config)])
    assert (parsed.backbone, parsed.crop_size, parsed.decoder, parsed.scale_range, parsed.head, parsed.color_jitter) \
        == ("resnet_v2_18", 64, True, (0.5, 1.5), "vortex", True)
    assert parsed.batch_size == TrainConfig().batch_size  # not in the file: the default
    # the command line wins, before or after --config
    assert parse_config(["--crop_size", "100", "--config", str(config)]).crop_size == 100
    assert parse_config(["--config", str(config), "--decoder", "0"]).decoder is False


def test_base_file_is_extended_and_overridden(tmp_path):
    write(tmp_path / "common.json", {"crop_size": 64, "batch_size": 4, "seed": 3})
    (tmp_path / "phases").mkdir()
    phase = write(tmp_path / "phases" / "p2.json", {"_base_": "../common.json", "crop_size": 96, "seed": None})
    parsed = parse_config(["--config", str(phase)])
    assert (parsed.crop_size, parsed.batch_size, parsed.seed) == (96, 4, TrainConfig().seed)


@pytest.mark.parametrize("values, message", [
    ({"crop_sizee": 80}, "unknown key 'crop_sizee'"),
    ({"crop_size": "80"}, "'crop_size': expected an integer, got \"80\""),
    ({"decoder": "yes"}, "'decoder': expected true/false"),
    ({"scale_range": 0.5}, "'scale_range': expected a list"),
    ({"initial_learning_rate": [0.1]}, "'initial_learning_rate': expected a number"),
    ({"output_stride": 12}, "argument --output_stride: invalid choice: 12"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_values_are_one_line_naming_file_and_key(tmp_path, capsys, values, message):
    config = write(tmp_path / "bad.json", values)
    assert main(["--config", str(config), "--dataset", "toy", "--max_iter", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"train.py: error: --config {config}: ")
    assert message in err


def test_unreadable_missing_and_looping_files(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{\"crop_size\": 3")
    write(tmp_path / "loop.json", {"_base_": "loop.json"})
    for name, message in (("missing.json", "cannot read it"), ("broken.json", "not valid JSON"),
                          ("loop.json", "include each other")):
        assert main(["--config", str(tmp_path / name), "--max_iter", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(tmp_path / name) in err and message in err


def test_run_folder_config_repeats_the_run(tmp_path):
    """A run's config.json given back to --config (with another --output_dir) is the same configuration."""
    run_dir, data_dir = tmp_path / "x", tmp_path / "toy"
    result = run_train(train_flags(data_dir, run_dir, max_iter=1, checkpoint_every=1, color_jitter=1, warmup_iters=0,
                                   scale_range="0.6,1.4", multi_grid="1,2,2", aspp_or_vortex=2))
    assert result.returncode == 0, result.stderr
    recorded = json.loads((run_dir / "config.json").read_text())
    repeated = parse_config(["--config", str(run_dir / "config.json"), "--output_dir", str(tmp_path / "y")]).to_dict()
    assert repeated.pop("output_dir") == str(tmp_path / "y")
    recorded.pop("output_dir"), recorded.pop("cpu_threads")
    assert {key: list(value) if isinstance(value, tuple) else value for key, value in repeated.items()} == recorded


def test_evaluate_and_predict_take_config(tmp_path):
    config = write(tmp_path / "e.json", {"checkpoint": "runs/x", "split": "test", "scales": [0.5, 1.0], "flip": True})
    parsed = parse_job_config(evaluate.EvaluateConfig, "evaluate", ["--config", str(config)])
    assert (str(parsed.checkpoint), parsed.split, parsed.scales, parsed.flip) == ("runs/x", "test", (0.5, 1.0), True)
    config = write(tmp_path / "p.json", {"checkpoint": "runs/x", "input": ["a.jpg"], "output_dir": "out", "limit": 3})
    parsed = parse_job_config(predict.PredictConfig, "predict", ["--config", str(config)])
    assert (str(parsed.checkpoint), parsed.limit) == ("runs/x", 3)
    with pytest.raises(UsageError, match="unknown key 'crop_size'"):
        parse_job_config(predict.PredictConfig, "predict", ["--config", str(write(tmp_path / "t.json",
                                                                                          {"crop_size": 3}))])


def test_warmup_rises_linearly_then_poly():
    schedule = make_lr_schedule("poly", 0.1, 110, power=1.0, warmup=10)
    assert [round(schedule(it), 6) for it in (0, 5, 10, 60, 110)] == [0.0, 0.05, 0.1, 0.05, 0.0]
    assert main(["--dataset", "toy", "--max_iter", "5", "--warmup_iters", "5"]) == 2


def test_augmentation_flags_reach_the_transform(tmp_path):
    from deeplab_gluon.trainer import load_data

    config = parse_config(["--dataset", "toy", "--data_dir", str(tmp_path / "toy"), "--max_iter", "1",
                           "--color_jitter", "1", "--blur", "1", "--crop_size", "40", "--batch_size", "2"])
    transform = load_data(config).transform
    assert (transform.color_jitter, transform.blur, transform.crop_size) == (True, True, (40, 40))


@pytest.mark.parametrize("recipe", sorted(path.name for path in RECIPES.iterdir() if path.is_dir()))
def test_recipe_phases_load(recipe):
    phases = sorted((RECIPES / recipe).glob("phase*.json"))
    assert phases, f"recipes/{recipe} has no phase*.json"
    for phase in phases:
        parsed = parse_config(["--config", str(phase), "--output_dir", "runs/x"])
        assert parsed.max_iter > 0
        # the data folder and the run folder are the command's: sh_train.sh passes them
        assert "data_dir" not in recipe_values(phase) and "output_dir" not in recipe_values(phase)
        problems = [p for p in parsed.problems() if "--data_dir" not in p]  # the data may be absent here
        assert problems == []


def recipe_values(path: Path) -> dict:
    from deeplab_gluon.config_file import read_values

    return read_values(path)


@pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason=f"{CAMVID} is absent")
def test_camvid_recipe_reaches_config_and_lowers_the_loss(tmp_path):
    """A few iterations of the recipe's first phase on the real CamVid train split (smaller crops and a
    shorter run, given on the command line over the recipe): every other recipe value is in config.json, and
    the training loss goes down."""
    phase = RECIPES / "camvid" / "phase1.json"
    short = {"crop_size": 96, "batch_size": 4, "max_iter": 16, "val_split": "none", "log_every": 1, "progress": 0,
             "class_weights": "", "num_workers": 0, "warmup_iters": 0, "checkpoint_every": 16,
             "initial_learning_rate": 0.01}  # 16 steps from scratch: a learning rate that cannot overshoot
    args = ["--config", str(phase), "--data_dir", str(CAMVID), "--output_dir", str(tmp_path / "run")]
    for key, value in short.items():
        args += [f"--{key}", str(int(value) if isinstance(value, bool) else value)]
    result = run_train(args)
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    recipe, ran = parse_config(["--config", str(phase)]).to_dict(), parse_config(args).to_dict()
    fields = {_field_name(key) for key in recipe_values(phase)}
    overridden = {field for field in fields if recipe[field] != ran[field]}
    assert overridden and overridden <= {_field_name(key) for key in short}  # only what the test shortened
    for field in fields:
        assert recorded[field] == (list(ran[field]) if isinstance(ran[field], tuple) else ran[field]), field
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if json.loads(line)["type"] == "train"]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4


def _field_name(key: str) -> str:
    """The TrainConfig field a config key (a field or a flag name) sets."""
    import dataclasses

    return next(f.name for f in dataclasses.fields(TrainConfig) if key in (f.name, f.metadata.get("name")))
