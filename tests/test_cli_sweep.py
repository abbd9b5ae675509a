"""Every command line against bad inputs (issue 18, "a guard so this class of bug stays out").

Each CLI (train.py, evaluate, predict, export, convert_gluoncv, scripts/prepare_voc.py,
scripts/make_toy_data.py) is
run in this process, ``main(argv)``, on missing, empty, corrupt, truncated and bit-flipped
checkpoints and images, unwritable outputs, and a bad value for every flag; the flags are read from
the jobs' config dataclasses (and the scripts' parsers), so a new flag is swept without a new line
here. A run fails the sweep when its output holds ``Traceback`` or it raises, when its exit code is
not 1 or 2 (a generated value may also be a valid one: 0 is accepted there), or when it changes a
file outside the outputs it was asked to write.
"""
import contextlib
import dataclasses
import importlib.util
import io
import json
import re
import shutil
import tarfile
import traceback
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deeplab_gluon import compare, convert_gluoncv, evaluate, export, predict, train
from deeplab_gluon.checkpoint import Checkpoint, checkpoint_name
from deeplab_gluon.cli import build_parser
from deeplab_gluon.data import make_toy_dataset, save_index_png, write_image
from deeplab_gluon.data.toy import TOY_CLASSES
from tiny_model import save_tiny_checkpoint, tiny_net

REPO = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(f"sweep_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PREPARE_VOC, MAKE_TOY_DATA = _script("prepare_voc"), _script("make_toy_data")
JOBS = {"train": train.main, "evaluate": evaluate.main, "evaluate folders": evaluate.main, "predict": predict.main,
        "export": export.main, "convert_gluoncv": convert_gluoncv.main, "prepare_voc": PREPARE_VOC.main,
        "make_toy_data": MAKE_TOY_DATA.main, "compare": compare.main}
# Flags that name what a command writes (train's --data_dir too: the toy set is generated there if absent)
OUTPUT_FLAGS = {"--output", "--out_json", "--output_dir", "--out", "--download_dir", "--data_dir", "--report"}

# A valid command for each job: each case adds (or overrides: argparse keeps the last) its own flags.
BASE = {
    "train": ["--dataset", "toy", "--data_dir", "{root}/toy", "--base_architecture", "resnet_v2_18", "--crop_size",
              "32", "--batch_size", "2", "--max_iter", "1", "--num_workers", "0", "--val_split", "", "--progress",
              "0", "--output_dir", "{out}/run"],
    "evaluate": ["--checkpoint", "{root}/good.ckpt", "--output", "{out}/scores.json", "--progress", "0"],
    "evaluate folders": ["--pred_dir", "{root}/labels", "--gt_dir", "{root}/labels", "--output", "{out}/s.json",
                         "--progress", "0"],
    "predict": ["--checkpoint", "{root}/good.ckpt", "--input", "{root}/images/good.jpg", "--output_dir", "{out}/p",
                "--progress", "0"],
    "export": ["--checkpoint", "{root}/good.ckpt", "--output_dir", "{out}/x", "--format", "symbol", "--check", "0",
               "--input_size", "32", "32"],
    # no gluoncv file here (hundreds of MB): the converter meets only files that are not one
    "convert_gluoncv": ["--model", "deeplab_resnet101_voc", "--params", "{root}/good.ckpt", "--output",
                        "{out}/converted.ckpt"],
    "prepare_voc": ["--out", "{out}/voc"],
    "make_toy_data": ["--out", "{out}/toy", "--num_train", "1", "--num_val", "1", "--size", "24"],
    "compare": ["{root}/eval_a.json", "{root}/eval_b.json", "--report", "{out}/compare", "--progress", "0",
                "--resamples", "100"],
}
CONFIGS = {"train": train.TrainConfig, "evaluate": evaluate.EvaluateConfig, "evaluate folders": evaluate.EvaluateConfig,
           "predict": predict.PredictConfig, "export": export.ExportConfig,
           "convert_gluoncv": convert_gluoncv.ConvertConfig, "compare": compare.CompareConfig}

BAD_CHECKPOINTS = ["missing.ckpt", "empty.ckpt", "text.ckpt", "truncated.ckpt", "bitflip.ckpt", "no_meta.ckpt",
                   "meta_not_json.ckpt", "meta_without_model.ckpt", "unknown_backbone.ckpt", "empty_run",
                   "damaged_run"]
BAD_IMAGES = ["missing.jpg", "empty.jpg", "text.jpg", "truncated.jpg", "bitflip.jpg", "no_images", "bad_list.txt"]
UNWRITABLE = ["{root}/afile", "{root}/afile/below", "/proc/deeplab-sweep/out"]


def _cases():
    """(id, job, argv, allowed exit codes) of the hand-made table; each adds its flags to its job's
    valid command (argparse keeps the last value of a flag given twice)."""
    return [(case_id, job, BASE[job] + extra, allowed) for case_id, job, extra, allowed in _table()]


def _table():
    cases = []
    for name in BAD_CHECKPOINTS:
        bad = f"{{root}}/{name}"
        cases += [(f"evaluate-checkpoint-{name}", "evaluate", ["--checkpoint", bad], {2}),
                  (f"predict-checkpoint-{name}", "predict", ["--checkpoint", bad], {2}),
                  (f"export-checkpoint-{name}", "export", ["--checkpoint", bad], {2}),
                  (f"train-init_from-{name}", "train", ["--init_from", bad], {2}),
                  (f"train-resume-{name}", "train", ["--resume", bad], {2}),
                  (f"convert_gluoncv-params-{name}", "convert_gluoncv", ["--params", bad], {1, 2})]
    for name in BAD_IMAGES:
        cases.append((f"predict-input-{name}", "predict", ["--input", f"{{root}}/images/{name}"],
                      {0, 1} if name == "bitflip.jpg" else {1, 2}))
    cases.append(("predict-strict-truncated", "predict", ["--input", "{root}/images/truncated.jpg", "--strict", "1"],
                  {1}))
    cases.append(("predict-compare_gt-other-size", "predict", ["--compare_gt", "{root}/wrong_size_labels"], {1}))
    for target in UNWRITABLE:
        cases += [(f"train-output_dir-{target}", "train", ["--output_dir", target], {1, 2}),
                  (f"predict-output_dir-{target}", "predict", ["--output_dir", target], {1, 2}),
                  (f"export-output_dir-{target}", "export", ["--output_dir", target], {1, 2}),
                  (f"evaluate-output-{target}", "evaluate", ["--output", f"{target}/s.json"], {1, 2}),
                  (f"convert_gluoncv-output-{target}", "convert_gluoncv", ["--output", f"{target}/c.ckpt"], {1, 2}),
                  (f"make_toy_data-out-{target}", "make_toy_data", ["--out", target], {1, 2}),
                  (f"prepare_voc-out-{target}", "prepare_voc", ["--out", target, "--voc", "{root}/voc.tar"], {1, 2}),
                  (f"compare-report-{target}", "compare", ["--report", target], {2})]
    for name in ("missing.json", "images/text.jpg", "good.ckpt", "empty_run", "run", "labels"):
        cases.append((f"compare-input-{name}", "compare", [f"{{root}}/{name}"], {2}))  # a third input: refused
    cases += [
        ("train-data_dir-missing", "train", ["--dataset", "voc", "--data_dir", "{root}/missing"], {2}),
        ("train-broken-dataset-strict", "train", ["--data_dir", "{root}/broken_toy", "--skip_bad_samples", "0",
                                                  "--batch_size", "4"], {1}),
        ("train-folder-dataset-without-lists", "train", ["--dataset", "folder", "--data_dir", "{root}/folder_data"],
         {1, 2}),
        ("train-pre_trained_model-text", "train", ["--pre_trained_model", "{root}/images/text.jpg"], {1, 2}),
        ("train-pre_trained_model-a-checkpoint", "train", ["--pre_trained_model", "{root}/good.ckpt"], {1, 2}),
        ("evaluate-broken-dataset", "evaluate", ["--data_dir", "{root}/broken_toy", "--split", "train"], {1}),
        ("evaluate-labels-of-other-size", "evaluate folders", ["--pred_dir", "{root}/wrong_size_labels",
                                                               "--num_classes", "5"], {1}),
        ("evaluate-ids_file-binary", "evaluate folders", ["--ids_file", "{root}/good.ckpt"], {1, 2}),
        ("evaluate-ids_file-a-folder", "evaluate folders", ["--ids_file", "{root}/labels"], {2}),
        ("evaluate-classes-missing", "evaluate folders", ["--classes", "{root}/missing.txt"], {2}),
        ("evaluate-classes-binary", "evaluate folders", ["--classes", "{root}/good.ckpt"], {1, 2}),
        ("prepare_voc-voc-missing", "prepare_voc", ["--voc", "{root}/missing.tar"], {2}),
        ("prepare_voc-voc-text", "prepare_voc", ["--voc", "{root}/images/text.jpg"], {1, 2}),
        ("prepare_voc-voc-truncated", "prepare_voc", ["--voc", "{root}/truncated.tar"], {1, 2}),
        ("prepare_voc-voc-empty-folder", "prepare_voc", ["--voc", "{root}/images/no_images"], {1, 2}),
        ("prepare_voc-sbd-text", "prepare_voc", ["--voc", "{root}/voc.tar", "--sbd", "{root}/images/text.jpg"],
         {1, 2}),
        ("make_toy_data-size-three", "make_toy_data", ["--size", "1", "2", "3"], {2}),
    ]
    return cases


def _bad_values(config_class, field):
    """Values of ``field``'s flag to try, from its type: not a value of the type, out of range, empty,
    a path that cannot be. The field's own default is left out (it is no bad value)."""
    hint = typing.get_type_hints(config_class)[field.name]
    kind = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        values = [["2"], ["maybe"]]
    elif kind is int:
        values = [["x"], ["-1"], ["1.5"]]
    elif kind is float:
        values = [["x"], ["nan"], ["-inf"], ["-1"]]
    elif origin in (tuple, typing.Tuple) and len(args) == 2 and args[1] is Ellipsis:
        values = [["x"], [""], ["-1"], ["1,,x"]]
    elif origin in (tuple, typing.Tuple):
        values = [["-1"] * len(args), ["x"] * len(args)]
    elif origin in (list, typing.List):
        values = [["{root}/missing.jpg"], ["{root}/images/empty.jpg", "{root}/images/good.jpg"]]
    else:  # str or Path
        values = [[""], ["{root}/missing"], ["{root}/afile/below"], ["{root}/images/text.jpg"]]
    if field.metadata.get("choices"):
        values.append(["bogus"])
    default = field.default if field.default is not dataclasses.MISSING else None
    return [value for value in values if value != [str(default)] and not (value == [""] and default in ("", ()))]


def _generated():
    """(id, job, argv, allowed exit codes) for a bad value of every flag of every job."""
    cases = []
    for job, config_class in CONFIGS.items():
        for field in dataclasses.fields(config_class):
            if "help" not in field.metadata:
                continue
            flag = f"--{field.metadata.get('name', field.name)}"
            given = BASE[job][BASE[job].index(flag) + 1] if flag in BASE[job] else None
            for value in _bad_values(config_class, field):
                made_or_overwritten = flag in OUTPUT_FLAGS and value[0] in ("{root}/missing", "{root}/images/text.jpg")
                if value == [given] or made_or_overwritten:
                    continue  # no bad value: what the valid command gives, an output to make or to overwrite
                cases.append((f"{job}{flag}={' '.join(value)}", job, BASE[job] + [flag] + value, {0, 1, 2}))
        # --config FILE, which every job's parser adds: no file, an empty name, a file that is not JSON
        for value in ("{root}/missing.json", "", "{root}/images/text.jpg"):
            cases.append((f"{job}--config={value}", job, BASE[job] + ["--config", value], {2}))
    return cases


SCRIPT_FLAGS = {  # the scripts have no config dataclass: their flags, checked against their --help below
    "prepare_voc": {"--out": ["", "{root}/afile"], "--voc": ["", "{root}/afile"], "--sbd": ["", "{root}/afile"],
                    "--download_dir": ["{root}/afile/below"]},
    "make_toy_data": {"--out": [""], "--num_train": ["-1", "x"], "--num_val": ["-1", "0"], "--size": ["0", "-5", "x"],
                      "--seed": ["-1", "x"], "--shape_only": ["1"]},
}


def _script_cases():
    return [(f"{job}{flag}={value}", job, BASE[job] + [flag, value], {0, 1, 2})
            for job, flags in SCRIPT_FLAGS.items() for flag, values in flags.items() for value in values]


ALL_CASES = _cases() + _generated() + _script_cases()


# ---------------------------------------------------------------------------------------------- the inputs

def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Good and bad inputs of every kind, shared by all cases (read-only: a case that changes one fails)."""
    root = tmp_path_factory.mktemp("sweep")
    make_toy_dataset(root / "toy", num_train=4, num_val=2, image_size=(32, 32), seed=0)
    shutil.copytree(root / "toy", root / "broken_toy")
    (root / "broken_toy" / "VOC2012" / "JPEGImages" / "train_00001.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")

    good = save_tiny_checkpoint(root / "run", tiny_net(num_classes=5), TOY_CLASSES, dataset="toy",
                                data_dir=root / "toy", iteration=3)
    shutil.copy(good, root / "good.ckpt")
    data = good.read_bytes()
    (root / "empty.ckpt").write_bytes(b"")
    (root / "text.ckpt").write_text("not a checkpoint")
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    shutil.copy(good, root / "bitflip.ckpt")
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("net.params")
        meta = json.loads(archive.read("meta.json"))
    _flip_byte(root / "bitflip.ckpt", info.header_offset + len(info.FileHeader()) + 5000)
    _zip(root / "no_meta.ckpt", {"net.params": b"x"})
    _zip(root / "meta_not_json.ckpt", {"meta.json": "{not json", "net.params": b"x"})
    _zip(root / "meta_without_model.ckpt", {"meta.json": json.dumps({"iteration": 3}), "net.params": b"x"})
    _zip(root / "unknown_backbone.ckpt", {"meta.json": json.dumps(dict(meta, model=dict(meta["model"],
                                                                                         backbone="resnet999_v9"))),
                                          "net.params": b"x"})
    (root / "empty_run").mkdir()
    (root / "damaged_run" / "checkpoints").mkdir(parents=True)
    shutil.copy(root / "bitflip.ckpt", root / "damaged_run" / "checkpoints" / checkpoint_name(3))

    images = root / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    write_image(images / "good.jpg", rng.randint(0, 256, (24, 28, 3)).astype(np.uint8))
    jpeg = (images / "good.jpg").read_bytes()
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("not an image")
    (images / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (images / "bitflip.jpg").write_bytes(jpeg)
    _flip_byte(images / "bitflip.jpg", len(jpeg) // 2)
    (images / "no_images").mkdir()
    (images / "bad_list.txt").write_text(f"{images / 'good.jpg'}\nnot_there\n")

    (root / "labels").mkdir()
    (root / "wrong_size_labels").mkdir()
    save_index_png(root / "labels" / "good.png", np.zeros((24, 28), np.uint8))
    save_index_png(root / "wrong_size_labels" / "good.png", np.zeros((10, 10), np.uint8))
    (root / "folder_data" / "images").mkdir(parents=True)
    (root / "folder_data" / "labels").mkdir()
    shutil.copy(images / "good.jpg", root / "folder_data" / "images" / "a.jpg")
    shutil.copy(root / "labels" / "good.png", root / "folder_data" / "labels" / "a.png")

    with tarfile.open(root / "voc.tar", "w") as tar:  # a VOC archive with its lists and nothing else
        text = b"2007_000001\n"
        for name in ("train.txt", "val.txt"):
            member = tarfile.TarInfo(f"VOCdevkit/VOC2012/ImageSets/Segmentation/{name}")
            member.size = len(text)
            tar.addfile(member, io.BytesIO(text))
    (root / "truncated.tar").write_bytes((root / "voc.tar").read_bytes()[:700])
    (root / "afile").write_text("a file where a folder is expected")
    (root / "cwd").mkdir()  # the working folder: a CLI must not write there unasked
    for name, miou in (("eval_a.json", [0.5, 0.25]), ("eval_b.json", [0.75, 0.5])):  # compare's inputs
        (root / name).write_text(json.dumps({
            "format": 2, "classes": list(TOY_CLASSES), "dataset": "toy", "split": "val",
            "summary": {"pixAcc": 0.5, "mAcc": 0.5, "mIoU": miou[0], "fwIoU": 0.5,
                        "IoU": {name: miou[0] for name in TOY_CLASSES}},
            "per_image": {"ids": ["val_00000", "val_00001"], "pixAcc": [0.5, 0.5], "mIoU": miou}}))
    return root


def _snapshot(root):
    """Every path under ``root`` with its size and modification time."""
    found = {}
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            stat = path.lstat()
            found[path] = None if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return found


def _run(job, argv):
    """(exit code, stdout + stderr, traceback or None) of ``main(argv)`` in this process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    raised = None
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = JOBS[job](argv)
        except SystemExit as exit:  # argparse in the scripts
            code = exit.code
        except BaseException:  # noqa: B902 - whatever escapes main() is a traceback the user would see
            code, raised = None, traceback.format_exc()
    return code, stdout.getvalue() + stderr.getvalue(), raised


@pytest.mark.parametrize("job, argv, allowed", [case[1:] for case in ALL_CASES], ids=[case[0] for case in ALL_CASES])
def test_cli_sweep(sandbox, tmp_path, monkeypatch, job, argv, allowed):
    out = tmp_path / "out"
    argv = [arg.format(root=sandbox, out=out) for arg in argv]
    written = [out] + [Path(value) for name, value in zip(argv, argv[1:]) if name in OUTPUT_FLAGS and value]
    monkeypatch.chdir(sandbox / "cwd")
    before = _snapshot(sandbox)
    code, output, raised = _run(job, argv)
    after = _snapshot(sandbox)
    shutil.rmtree(tmp_path, ignore_errors=True)  # checkpoints of the runs that trained: 60 MB each
    assert raised is None, f"{job} {argv} raised:\n{raised}"
    assert "Traceback" not in output, f"{job} {argv}:\n{output}"
    assert code in allowed, f"{job} {argv} exited {code}, expected one of {sorted(allowed)}:\n{output}"
    touched = [path for path in set(before) | set(after) if before.get(path, "absent") != after.get(path, "absent")]
    outside = sorted(str(path) for path in touched
                     if not any(target in (path, *path.parents) for target in written))
    assert not outside, f"{job} {argv} changed files it was not asked to write: {outside}\n{output}"


def test_the_script_flags_above_are_all_the_scripts_flags(capsys):
    for job, flags in SCRIPT_FLAGS.items():
        code, output, _ = _run(job, ["--help"])
        declared = set(re.findall(r"(--\w+)", output)) - {"--help"}
        assert code == 0 and declared <= set(flags) | {"--download"}, f"{job}: sweep {sorted(declared - set(flags))}"


def test_the_generated_values_cover_every_flag_of_every_job():
    for job, config_class in CONFIGS.items():
        parser_flags = {action.option_strings[0] for action in build_parser(config_class, job)._actions
                        if action.option_strings and action.option_strings[0] != "-h"}
        swept = {argv[len(BASE[job])] for case_id, _, argv, _ in _generated() if case_id.startswith(f"{job}--")}
        assert parser_flags <= swept, f"{job}: no bad value for {sorted(parser_flags - swept)}"
