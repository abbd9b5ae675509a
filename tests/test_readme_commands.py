"""Every command line README.md and docs/*.md show runs as written: each ``train.py``, ``sh_train.sh``
and ``python -m deeplab_gluon.<tool>`` line of their code blocks is extracted and checked against small
local fixtures laid out under the names the documents use (``VOCdevkit_aug``, ``data/toy``, ``mydata``,
``runs/gcv/...``), so that the documents cannot drift from the code.

- ``train.py``: ``--dry_run 1`` must pass (flags, data folder, split lists, ``--init_from`` checkpoint);
  GPU ids become ``--gpus -1``, the only change (this machine has no GPU).
- ``sh_train.sh``: ``DRY_RUN=1`` must succeed, and every ``train.py`` command it prints must parse.
- ``evaluate``, ``predict``, ``export``, ``convert_gluoncv``, ``compare``: the flags parse and the job's
  ``problems()`` (its checks before opening files) find nothing.
"""
import importlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon import cli, train
from deeplab_gluon.checkpoint import Checkpoint, checkpoint_name
from deeplab_gluon.convert_gluoncv import GLUONCV_MODELS
from deeplab_gluon.data import make_toy_dataset, save_index_png, write_image
from deeplab_gluon.models import ModelSpec
from fake_scenes import write_ade20k, write_cityscapes
from fake_voc import write_sbd, write_voc

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
COMMAND = re.compile(r"(?:^|[\s/])(train\.py|sh_train\.sh|-m deeplab_gluon\.(evaluate|predict|export|convert_gluoncv|compare))"
                     r"(?=\s|$)")
TOOLS = {"evaluate": "EvaluateConfig", "predict": "PredictConfig", "export": "ExportConfig",
         "convert_gluoncv": "ConvertConfig", "compare": "CompareConfig"}


def code_lines(text: str):
    """``(line number, line)`` of the fenced and indented code blocks of a markdown text."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            yield number, line


def documented_commands():
    """``(where, command text)`` for every command line of the documents, continuation lines joined."""
    found = []
    for document in DOCUMENTS:
        pending, start = "", 0
        for number, line in code_lines(document.read_text()):
            text = (pending + " " + line.strip()) if pending else line.strip()
            start = start if pending else number
            if text.endswith("\\"):
                pending = text[:-1]
                continue
            pending = ""
            if COMMAND.search(text) and not text.startswith(("|", "- ", "* ")):
                found.append((f"{document.relative_to(REPO)}:{start}", text))
    return found


COMMANDS = documented_commands()


def split_command(text: str):
    """``(environment, program, arguments)``: ``DRY_RUN=1 ./sh_train.sh HEAD=2 # c`` ->
    ``({"DRY_RUN": "1"}, "sh_train.sh", ["HEAD=2"])``; the program is ``train.py``, ``sh_train.sh`` or the tool."""
    words = shlex.split(text, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    for index, word in enumerate(words):
        if word.endswith(("train.py", "sh_train.sh")):
            return env, Path(word).name, words[index + 1:]
        if word == "-m" and words[index + 1].startswith("deeplab_gluon."):
            return env, words[index + 1].split(".", 1)[1], words[index + 2:]
    raise AssertionError(f"no command in {text!r}")


def on_this_machine(args):
    """``args`` with GPU ids replaced by the CPU (``--gpus -1``): the one change the tests make."""
    return ["-1" if previous == "--gpus" and re.fullmatch(r"[\d,]+", arg) else arg
            for previous, arg in zip([""] + args, args)]


def fake_checkpoint(path: Path, spec: ModelSpec, dataset: str, data_dir: str) -> Path:
    """A checkpoint that describes ``spec`` (what --dry_run reads) around a one-weight network: the dry run
    compares descriptions and loads no weights, so the file can stay tiny."""
    net = mx.gluon.nn.Dense(1, in_units=1)
    net.initialize()
    if path.suffix != ".ckpt":
        path = path / "checkpoints" / checkpoint_name(1)
    meta = {"iteration": 1, "model": spec.to_dict(), "classes": [f"c{index}" for index in range(spec.num_classes)],
            "ignore_label": 255, "config": {"dataset": dataset, "data_dir": data_dir}}
    return Checkpoint.write(path, net, None, meta).path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The data folders the documents name, small: VOC + SBD, the toy set, a folder dataset of 12 classes,
    Cityscapes, ADE20K."""
    root = tmp_path_factory.mktemp("data")
    write_voc(root / "VOCdevkit_aug" / "VOC2012")
    write_sbd(root / "VOCdevkit_aug" / "benchmark_RELEASE" / "dataset")
    make_toy_dataset(root / "data" / "toy", num_train=4, num_val=2, image_size=(24, 24), seed=0)
    mydata = root / "mydata"
    rng = np.random.default_rng(0)
    (mydata / "images").mkdir(parents=True)
    (mydata / "labels").mkdir()
    for index in range(4):
        write_image(mydata / "images" / f"{index:04d}.jpg", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        save_index_png(mydata / "labels" / f"{index:04d}.png", rng.integers(0, 12, (20, 24), dtype=np.uint8))
    (mydata / "train.txt").write_text("0000\n0001\n0002\n")
    (mydata / "val.txt").write_text("0003\n")
    (mydata / "classes.txt").write_text("".join(f"class{index}\n" for index in range(12)))
    write_cityscapes(root / "cityscapes")
    write_ade20k(root)
    camvid = root / "camvid"  # CamVid's layout: train/, trainannot/ ... and 'image label' list files
    for split in ("train", "val"):
        (camvid / split).mkdir(parents=True)
        (camvid / f"{split}annot").mkdir()
        for index in range(2):
            write_image(camvid / split / f"{index}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
            save_index_png(camvid / f"{split}annot" / f"{index}.png", rng.integers(0, 12, (20, 24), dtype=np.uint8))
        (camvid / f"{split}.txt").write_text("".join(f"{split}/{i}.png {split}annot/{i}.png\n" for i in range(2)))
    return root


@pytest.fixture
def checkout(datasets, tmp_path, monkeypatch):
    """A working folder where the documents' relative data paths exist, as in a user's checkout."""
    for name in ("VOCdevkit_aug", "data", "mydata", "cityscapes", "ADEChallengeData2016", "camvid"):
        (tmp_path / name).symlink_to(datasets / name)
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    for photos in ("photos", "my_images"):  # "your own images"
        (tmp_path / photos).symlink_to(datasets / "data" / "toy" / "VOC2012" / "JPEGImages")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_documents_show_every_kind_of_command():
    kinds = {split_command(text)[1] for _, text in COMMANDS}
    assert kinds == {"train.py", "sh_train.sh", *TOOLS}, kinds
    readme = [text for where, text in COMMANDS if where.startswith("README.md")]
    assert len(readme) >= 10


@pytest.mark.parametrize("where, text", [c for c in COMMANDS if split_command(c[1])[1] == "train.py"],
                         ids=[w for w, t in COMMANDS if split_command(t)[1] == "train.py"])
def test_train_command_passes_its_dry_run(where, text, checkout, capsys):
    _, _, args = split_command(text)
    for flag, value in zip(args, args[1:]):
        if flag == "--init_from" and not Path(value).exists():
            name = Path(value).stem
            assert name in GLUONCV_MODELS, f"{where}: no fixture for --init_from {value}"
            model = GLUONCV_MODELS[name]
            fake_checkpoint(Path(value), model.spec, model.dataset, "VOCdevkit_aug")
        if flag == "--config" and value.startswith("runs/") and not Path(value).exists():
            # a run folder's config.json, as the recipe's run on the CamVid fixture would write it
            Path(value).parent.mkdir(parents=True)
            recorded = train.parse_config(["--config", "recipes/camvid/phase1.json", "--data_dir", "camvid",
                                           "--output_dir", str(Path(value).parent)]).to_dict()
            Path(value).write_text(json.dumps(recorded))
    code = train.main(on_this_machine(args) + ["--dry_run", "1"])
    captured = capsys.readouterr()
    assert code == 0, f"{where}: {text}\n{captured.err}"
    assert "dry run: every check passed" in captured.out


def test_the_gluoncv_fine_tune_takes_its_network_from_the_checkpoint(checkout, capsys):
    [text] = [text for where, text in COMMANDS if where.startswith("README.md") and "--init_from" in text]
    _, _, args = split_command(text)
    assert not {"--base_architecture", "--output_stride", "--aux", "--head_variant", "--dilation_rule"} & set(args)
    model = GLUONCV_MODELS["deeplab_resnet101_coco"]
    fake_checkpoint(Path(args[args.index("--init_from") + 1]), model.spec, model.dataset, "VOCdevkit_aug")
    assert train.main(on_this_machine(args) + ["--dry_run", "1"]) == 0
    assert "model: deeplabv3_resnet101_v1s_aspp_gluoncv, output stride 8, 21 classes" in capsys.readouterr().out


@pytest.mark.parametrize("where, text", [c for c in COMMANDS if split_command(c[1])[1] == "sh_train.sh"],
                         ids=[w for w, t in COMMANDS if split_command(t)[1] == "sh_train.sh"])
def test_sh_train_command_prints_train_commands_that_parse(where, text, monkeypatch):
    env, _, args = split_command(text)
    run = subprocess.run(["bash", str(REPO / "sh_train.sh"), *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env, "DRY_RUN": "1", "PRETRAINED": "/imagenet/backbone.params",
                              "PYTHON": "python"})
    assert run.returncode == 0, f"{where}: {text}\n{run.stderr}"
    printed = [line[2:] for line in run.stdout.splitlines() if line.startswith("+ ")]
    trains = [shlex.split(line)[2:] for line in printed if shlex.split(line)[1] == "train.py"]
    assert trains, run.stdout
    monkeypatch.chdir(REPO)  # the script runs from the repository: recipes/ paths are relative to it
    for train_args in trains:
        train.parse_config(train_args)  # a UsageError fails the test with its message


@pytest.mark.parametrize("where, text", [c for c in COMMANDS if split_command(c[1])[1] in TOOLS],
                         ids=[w for w, t in COMMANDS if split_command(t)[1] in TOOLS])
def test_tool_command_parses_and_has_no_problems(where, text, checkout):
    _, tool, args = split_command(text)
    module = importlib.import_module(f"deeplab_gluon.{tool}")
    if tool == "convert_gluoncv":  # its problems() checks that --params is a file
        params = Path(args[args.index("--params") + 1])
        params.parent.mkdir(parents=True, exist_ok=True)
        params.write_bytes(b"")
    config = cli.parse_config(getattr(module, TOOLS[tool]), module.PROG, on_this_machine(args))
    assert [problem for problem in config.problems() if problem] == [], f"{where}: {text}"
