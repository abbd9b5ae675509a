"""Running train.py in a subprocess for a few CPU steps on a small toy set (the end-to-end tests)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = [sys.executable, str(REPO / "train.py")]


def train_flags(data_dir, output_dir, max_iter=6, **extra):
    """train.py arguments: ResNet-18 on 32x32 toy crops, batch 4, CPU, a checkpoint every 3 steps;
    ``extra`` adds or overrides flags by name."""
    flags = {"dataset": "toy", "data_dir": data_dir, "train_split": "train", "base_architecture": "resnet_v2_18",
             "gpus": "-1", "crop_size": 32, "batch_size": 4, "initial_learning_rate": 0.01, "max_iter": max_iter,
             "num_workers": 0, "output_dir": output_dir, "val_every": 0, "log_every": 1, "progress": 0,
             "checkpoint_every": 3, "keep_checkpoints": 100}
    flags.update(extra)
    return [str(part) for key, value in flags.items() for part in (f"--{key}", value)]


def run_train(args, timeout=300, **kwargs):
    """Run train.py to the end; the ``CompletedProcess`` with its output as text."""
    return subprocess.run(TRAIN_PY + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def start_train(args, **kwargs):
    """Start train.py and return the ``Popen``, stdout discarded, stderr readable as text."""
    return subprocess.Popen(TRAIN_PY + list(args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def one_thread_env():
    """The environment for runs compared bit for bit: one OpenMP thread. With several, MXNet's
    BilinearResize2D backward adds its contributions in a varying order, so two runs of the same
    steps differ by float rounding (about 1e-6 relative in a gradient), which SGD then carries on."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}
