"""What happens when things go wrong: bad files, bad flags, kills, full disks, diverging losses."""
import json
import random
import resource
import shutil
import signal
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from deeplab_gluon import checkpoint as ckpt
from deeplab_gluon.checkpoint import Checkpoint
from deeplab_gluon.data import DataError, SegFolderDataset, get_dataset, make_toy_dataset, write_image
from deeplab_gluon.data.loader import SeededTransformDataset
from deeplab_gluon.data.transforms import TrainTransform
from train_runs import one_thread_env, run_train, start_train, train_flags


@pytest.fixture(scope="module")
def pristine_toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(root, num_train=12, num_val=3, image_size=(40, 40), seed=0)
    return root


@pytest.fixture
def toy(pristine_toy, tmp_path):
    """A private copy of the toy dataset that a test may break."""
    root = tmp_path / "toy"
    shutil.copytree(pristine_toy, root)
    return root


def _image(root, sample_id="train_00003"):
    return root / "VOC2012" / "JPEGImages" / f"{sample_id}.jpg"


def _label(root, sample_id="train_00003"):
    return root / "VOC2012" / "SegmentationClass" / f"{sample_id}.png"


# --- bad data: each gives one clear message naming the file ------------------------------------------

def _corrupt_jpeg(root):
    path = _image(root)
    garbage = bytes(random.Random(0).getrandbits(8) for _ in range(500))
    path.write_bytes(b"\xff\xd8\xff\xe0" + garbage + b"\xff\xd9")  # JPEG start and end, nonsense between
    return path


def _truncated_jpeg(root):
    path = _image(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return path


def _empty_image(root):
    path = _image(root)
    path.write_bytes(b"")
    return path


def _label_of_another_size(root):
    path = _label(root)
    Image.fromarray(np.zeros((30, 40), np.uint8), mode="P").save(path)
    return path


def _label_values_out_of_range(root):
    path = _label(root)
    values = np.array(Image.open(path))
    values[5:10, 5:10] = 9  # the toy set has classes 0..4
    Image.fromarray(values, mode="L").save(path)
    return path


BAD_FILES = {
    "corrupt JPEG": (_corrupt_jpeg, "cannot decode image {path}"),
    "truncated JPEG": (_truncated_jpeg, "cannot decode image {path}: truncated JPEG"),
    "empty file": (_empty_image, "cannot decode image {path}: the file is empty"),
    "label of another size": (_label_of_another_size, "but its label {path} is 40x30"),
    "label values out of range": (_label_values_out_of_range, "{path}: label values [9] are neither classes 0..4"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_each_bad_file_gives_a_message_naming_it(toy, kind):
    make_bad, message = BAD_FILES[kind]
    path = make_bad(toy)
    dataset = get_dataset("toy", toy, "train")
    with pytest.raises(DataError) as error:
        dataset[dataset.ids.index("train_00003")]
    assert message.format(path=path) in str(error.value)


def test_rgb_label_where_indices_were_expected_names_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_image(tmp_path / "images" / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 77  # not a VOC palette colour
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "labels" / "a.png")
    with pytest.raises(DataError, match=f"{tmp_path / 'labels' / 'a.png'}: RGB label with colours outside"):
        SegFolderDataset(tmp_path, num_classes=3)[0]


def test_list_naming_a_missing_image_fails_at_construction(toy):
    _image(toy, "train_00005").unlink()
    with pytest.raises(DataError, match=str(_image(toy, "train_00005"))):
        get_dataset("toy", toy, "train")


def test_training_loader_skips_a_bad_sample_and_logs_it_once(toy, tmp_path):
    path = _truncated_jpeg(toy)
    dataset = get_dataset("toy", toy, "train")
    bad = dataset.ids.index("train_00003")
    log = tmp_path / "bad_samples.txt"
    seeded = SeededTransformDataset(dataset, TrainTransform(crop_size=32), seed=0, bad_sample_log=str(log))
    for epoch in range(3):  # the bad sample is met every epoch; a fresh process (copy) meets it too
        image, label = seeded[epoch * len(dataset) + bad]
        assert image.shape == (3, 32, 32)
        SeededTransformDataset(dataset, TrainTransform(crop_size=32), 0, str(log))[bad]
    assert log.read_text().splitlines() == [f"cannot decode image {path}: truncated JPEG (no end-of-image marker)"]
    strict = SeededTransformDataset(dataset, TrainTransform(crop_size=32), seed=0)
    with pytest.raises(DataError, match="truncated JPEG"):
        strict[bad]


# --- end to end through train.py ---------------------------------------------------------------------

@pytest.mark.slow
def test_training_goes_past_a_bad_file_by_default_and_stops_on_it_when_asked(toy, tmp_path):
    path = _corrupt_jpeg(toy)
    done = run_train(train_flags(toy, tmp_path / "skip", max_iter=9, num_workers=2))  # 3 epochs of 3 batches
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "skip" / "bad_samples.txt").read_text() == f"cannot decode image {path}\n"
    strict = run_train(train_flags(toy, tmp_path / "strict", skip_bad_samples=0))
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines()[-1] == (f"train.py: error: cannot decode image {path} "
                                                      f"(--skip_bad_samples 1 skips such samples)")


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused_unless_only_the_backbone_is_asked_for(pristine_toy, tmp_path):
    assert run_train(train_flags(pristine_toy, tmp_path / "aspp", max_iter=3)).returncode == 0
    other = train_flags(pristine_toy, tmp_path / "vortex", max_iter=3, aspp_or_vortex=2, init_from=tmp_path / "aspp")
    refused = run_train(other)
    assert refused.returncode == 2  # found before any work: a usage error, as everywhere
    assert "--init_from: " in refused.stderr and "does not fit this model (head: checkpoint has 'aspp', this run has 'vortex')" in refused.stderr
    assert "--load_backbone_only" in refused.stderr
    accepted = run_train(other + ["--load_backbone_only", "1"])
    assert accepted.returncode == 0, accepted.stderr


def _log_segments(run):
    """How many runs have started writing to this run's log."""
    log = run / "log.jsonl"
    return log.read_text().count('"type": "start"') if log.exists() else 0


def _complete(path):
    with zipfile.ZipFile(path) as archive:
        return archive.testzip() is None and Checkpoint.read(path).iteration > 0


@pytest.mark.slow
def test_random_sigkills_during_steps_and_checkpoint_writes_lose_nothing(pristine_toy, tmp_path):
    """Checkpoints every iteration, so most kills land in the middle of a checkpoint write."""
    flags = dict(max_iter=12, checkpoint_every=1)
    straight = run_train(train_flags(pristine_toy, tmp_path / "straight", **flags), env=one_thread_env())
    assert straight.returncode == 0, straight.stderr

    run, rng, kills = tmp_path / "killed", random.Random(4), 0
    while True:
        resume = "last" if ckpt.list_checkpoints(run / "checkpoints") else "-1"
        process = start_train(train_flags(pristine_toy, run, resume=resume, **flags), env=one_thread_env())
        if kills < 3:
            deadline = time.time() + 240  # wait until this process trains, then kill it at a random moment
            while _log_segments(run) <= kills or '"train"' not in (run / "log.jsonl").read_text().split('"start"')[-1]:
                assert time.time() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.02)
            if kills == 2:  # the last kill comes after this process saved something, so resuming is tested
                saved = len(ckpt.list_checkpoints(run / "checkpoints"))
                while len(ckpt.list_checkpoints(run / "checkpoints")) <= saved:
                    assert time.time() < deadline and process.poll() is None, process.stderr.read()
                    time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 2.0))
            process.kill()
            process.wait()
            kills += 1
            # whatever the moment, every checkpoint file under its final name is complete
            assert all(_complete(path) for path in ckpt.list_checkpoints(run / "checkpoints"))
            continue
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        break

    starts = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 4 and starts[-1]["iteration"] > 0
    final = {name: ckpt.load_model(path) for name, path in
             (("straight", tmp_path / "straight"), ("killed", run))}
    for name, param in final["straight"]._collect_params_with_prefix().items():
        np.testing.assert_allclose(final["killed"]._collect_params_with_prefix()[name].data().asnumpy(),
                                   param.data().asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert not list((run / "checkpoints").glob(".*"))  # partial files of killed writes were cleaned up


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_a_checkpoint_before_exiting(pristine_toy, tmp_path, stop_signal):
    run = tmp_path / "run"
    process = start_train(train_flags(pristine_toy, run, max_iter=100_000, checkpoint_every=10_000, num_workers=1))
    deadline = time.time() + 240
    while not ((run / "log.jsonl").exists() and '"train"' in (run / "log.jsonl").read_text()):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"stopped by {stop_signal.name} at iteration" in stderr and "Traceback" not in stderr
    assert "continue with --resume last" in stderr
    saved = Checkpoint.latest(run / "checkpoints")
    assert saved is not None and 0 < saved.iteration < 10_000


def _limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_stops_with_a_clear_message(pristine_toy, tmp_path):
    """RLIMIT_FSIZE makes big writes fail with EFBIG, as a full disk fails them with ENOSPC."""
    run = tmp_path / "run"
    result = run_train(train_flags(pristine_toy, run, max_iter=3, val_split=""), preexec_fn=_limit_file_size(8 << 20))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train.py: error: could not write checkpoint {run / 'checkpoints' / 'iter-0000003.ckpt'}")
    assert "Write incomplete" in last and last.endswith("the previous checkpoint files are intact")
    assert list((run / "checkpoints").iterdir()) == []  # nothing half-written is left behind


@pytest.mark.slow
def test_diverging_losses_stop_training_with_the_last_good_checkpoint_intact(pristine_toy, tmp_path):
    run = tmp_path / "run"
    result = run_train(train_flags(pristine_toy, run, max_iter=50, initial_learning_rate=1e12, checkpoint_every=1,
                                   max_bad_steps=3))
    assert result.returncode == 1
    assert "3 non-finite losses in a row (last at iteration" in result.stderr
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    bad = [r["iteration"] for r in records if r["type"] == "nonfinite"]
    assert len(bad) == 3 and bad == list(range(bad[0], bad[0] + 3))
    assert all(_complete(path) for path in ckpt.list_checkpoints(run / "checkpoints"))
    assert Checkpoint.latest(run / "checkpoints").iteration == bad[-1] - 1
