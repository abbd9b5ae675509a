"""Segment image files with a trained checkpoint.

    python -m deeplab_gluon.predict --checkpoint runs/demo/phase2 --output_dir runs/demo/predictions \\
        --input data/toy/VOC2012/ImageSets/Segmentation/val.txt --limit 8

--input takes image files, folders (their images, sorted by name) and list files (.txt, one entry a
line: an image path, absolute or relative to the list's folder, or a VOC id, read as
``<list folder>/../../JPEGImages/<id>.jpg``). For every image, in --output_dir:

  <stem>.png          class indices as a palette PNG (the dataset's colours), the image's size
  <stem>_overlay.jpg  the colour mask blended on the image (--overlay_alpha)
  <stem>_probs.npy    with --save_probs: class probabilities, float16 (C, H, W)
  <stem>_compare.png  with --compare_gt DIR: image | prediction | ground truth (DIR/<stem>.png)

An image that cannot be read does not stop the others: every readable image is predicted, every
unreadable one is named at the end (one line each) and the exit code is 1. ``--strict 1`` stops at
the first instead (files that are no image at all are then refused before any work).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from .checkpoint import Checkpoint
from .cli import FAILURE, JobError, UsageError, checkpoint_flag, fail, flag, output_problem, parse_scales, run_job
from .data import checkpoint_palette, read_image, read_label, save_index_png, write_image
from .data.errors import DataError
from .data.folder import IMAGE_SUFFIXES, LABEL_SUFFIXES
from .devices import parse_devices
from .inference import class_map, image_to_batch, predict_labels, predict_probs
from .precision import InferenceFlags, prepare_checkpoint

PROG = "predict"


@dataclass
class PredictConfig(InferenceFlags):
    """Command-line settings of ``python -m deeplab_gluon.predict``."""

    input: List[str] = field(default_factory=list, metadata=flag(
        "image files, folders of images, or .txt lists of image paths or VOC ids", required=True))
    output_dir: Optional[Path] = field(default=None, metadata=flag("where the outputs go (created)", required=True))
    gpus: str = field(default="", metadata=flag("GPU ids like 0,1; empty or -1 for CPU; cpu:N for N CPU contexts"))
    scales: Tuple[float, ...] = field(default=(1.0,), metadata=flag(
        "comma-separated input scales whose softmaxes are averaged", parse=parse_scales))
    flip: bool = field(default=False, metadata=flag("also predict the mirrored image and average"))
    save_probs: bool = field(default=False, metadata=flag(
        "also write <stem>_probs.npy, float16 (C, H, W) probabilities"))
    limit: Optional[int] = field(default=None, metadata=flag("only the first N images"))
    overlay_alpha: float = field(default=0.5, metadata=flag("weight of the colour mask in <stem>_overlay.jpg"))
    compare_gt: Optional[Path] = field(default=None, metadata=flag(
        "folder of ground-truth label PNGs (<stem>.png): also write <stem>_compare.png"))
    strict: bool = field(default=False, metadata=flag(
        "stop at the first image that cannot be read (default: predict the others, list it at the end)"))
    progress: bool = field(default=True, metadata=flag("show a progress bar"))

    def problems(self) -> List[str]:
        """The problems with the flags themselves, before any file is opened."""
        problems = []
        try:
            parse_devices(self.gpus)
        except ValueError as err:
            problems.append(str(err))
        if not 0.0 <= self.overlay_alpha <= 1.0:
            problems.append(f"--overlay_alpha must lie in [0, 1], got {self.overlay_alpha}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit must be at least 1, got {self.limit}")
        problems.append(output_problem(self.output_dir, "--output_dir", folder=True))
        return [problem for problem in problems + self.precision_problems() if problem]


@dataclass
class PredictionPlan:
    """What a prediction run will do, checked before any work: the model, the images, their ground truth."""
    checkpoint: Checkpoint
    images: List[Path]
    ground_truth: Optional[Dict[str, Path]]


# ------------------------------------------------------------------------------------------------ inputs

def _images_in(folder: Path) -> List[Path]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UsageError(f"--input {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return images


def read_image_list(list_file: Path) -> List[Path]:
    """The images a list file names, one a line (blank lines and ``#`` comments skipped).

    A line's first field is an image path (absolute, relative to the working folder, or relative to
    the list's folder) or else a VOC id: ``ImageSets/Segmentation/val.txt`` lists ids whose images are
    ``<list folder>/../../JPEGImages/<id>.jpg``.
    """
    images = []
    voc_images = list_file.parent.parent.parent / "JPEGImages"
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line.split()[0]  # "image label" lines (folder datasets): the image
        candidates = [Path(entry), list_file.parent / entry, voc_images / f"{entry}.jpg"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise UsageError(f"{list_file}:{number}: {entry!r} is neither an image file nor a VOC id "
                             f"({candidates[-1]} does not exist)")
        images.append(found)
    if not images:
        raise UsageError(f"--input {list_file}: the list is empty")
    return images


def collect_inputs(specs: Sequence[str], strict: bool = False) -> List[Path]:
    """Image paths from ``--input`` values (files, folders, ``.txt`` lists), in the order given.

    Raises :class:`UsageError` naming the first input that does not exist, and with ``strict`` the
    first that is no image OpenCV reads.
    """
    images: List[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            images += _images_in(path)
        elif path.suffix.lower() == ".txt":
            if not path.is_file():
                raise UsageError(f"--input {path}: list file not found")
            images += read_image_list(path)
        elif path.is_file():
            images.append(path)
        else:
            raise UsageError(f"--input {path}: no such file or folder")
    for path in images if strict else ():
        # Checks the file's signature only: cheap, and it names a wrong file before any work.
        if not cv2.haveImageReader(str(path)):
            raise UsageError(f"--input {path}: not an image OpenCV can read")
    return images


def check_output_names(images: Sequence[Path], output_dir: Path) -> None:
    """Outputs are named by stem: refuse two inputs with one stem, and outputs over an input."""
    seen: Dict[str, Path] = {}
    for path in images:
        if path.stem in seen and seen[path.stem].resolve() != path.resolve():
            raise UsageError(f"two inputs share the name {path.stem!r} ({seen[path.stem]} and {path}); "
                             f"their outputs would overwrite each other")
        seen[path.stem] = path
        if (output_dir / f"{path.stem}.png").resolve() == path.resolve():
            raise UsageError(f"--output_dir {output_dir}: the prediction would overwrite the input {path}")


def ground_truth_files(images: Sequence[Path], folder: Path) -> Dict[str, Path]:
    """``{stem: label file}`` in ``folder`` for every image; :class:`UsageError` naming a missing one."""
    if not folder.is_dir():
        raise UsageError(f"--compare_gt {folder}: no such folder")
    found = {}
    for path in images:
        candidates = [folder / f"{path.stem}{suffix}" for suffix in LABEL_SUFFIXES]
        label = next((c for c in candidates if c.is_file()), None)
        if label is None:
            raise UsageError(f"--compare_gt: no ground truth for {path}: expected {candidates[0]}")
        found[path.stem] = label
    return found


# ------------------------------------------------------------------------------------------------- work

def write_outputs(output_dir: Path, stem: str, image: np.ndarray, labels: np.ndarray,
                  probs: Optional[np.ndarray], classes: Sequence[str], alpha: float,
                  ground_truth: Optional[np.ndarray] = None, palette: Optional[np.ndarray] = None) -> None:
    """The files of one image: ``image`` (H, W, 3) uint8 RGB, ``labels`` (H, W), ``probs`` (C, H, W) or None;
    ``palette`` (256, 3) the dataset's colours (VOC's by default)."""
    from .visualize import overlay, side_by_side  # matplotlib: imported when an image is written

    save_index_png(output_dir / f"{stem}.png", labels.astype(np.uint8), palette)
    background = 0 if classes and classes[0] == "background" else None  # black in VOC colours: leave it
    write_image(output_dir / f"{stem}_overlay.jpg", overlay(image, labels, alpha, palette, keep_class=background))
    if probs is not None:
        np.save(output_dir / f"{stem}_probs.npy", probs.astype(np.float16))
    if ground_truth is not None:
        side_by_side(image, labels, ground_truth, classes, path=output_dir / f"{stem}_compare.png", palette=palette)


def run_prediction(config: PredictConfig, plan: PredictionPlan) -> int:
    """Predict every image of ``plan``; one that cannot be read is skipped and named at the end (exit 1),
    or with ``--strict 1`` stops the run (:class:`JobError`)."""
    ctxs = parse_devices(config.gpus)
    net = prepare_checkpoint(plan.checkpoint, ctxs, config.output_stride, config)
    print(net.describe())
    images = plan.images
    failed: List[str] = []
    palette = checkpoint_palette(plan.checkpoint.meta)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(images), desc="predict", unit="img", disable=not config.progress, dynamic_ncols=True) as bar:
        for start in range(0, len(images), len(ctxs)):
            group = images[start:start + len(ctxs)]
            readable = []
            for path in group:
                try:
                    readable.append(read_inputs(path, plan))
                except DataError as err:
                    if config.strict:
                        raise JobError(f"{err} (without --strict 1 the other images are predicted)") from None
                    failed.append(str(err))
            predict_group(net, readable, ctxs, config, plan.checkpoint.classes, palette)
            bar.update(len(group))
    done = len(images) - len(failed)
    print(f"wrote predictions of {done} image{'s' if done != 1 else ''} to {config.output_dir}")
    for reason in failed:
        fail(PROG, reason)
    if failed:
        return fail(PROG, f"{len(failed)} of {len(images)} images could not be read (listed above); "
                          f"the other {done} were predicted", FAILURE)
    return 0


def read_inputs(path: Path, plan: PredictionPlan) -> Tuple[Path, np.ndarray, Optional[np.ndarray]]:
    """``(path, image, ground truth or None)``; :class:`DataError` naming the file that cannot be read."""
    picture = read_image(path)
    truth = read_label(plan.ground_truth[path.stem]) if plan.ground_truth else None
    if truth is not None and truth.shape != picture.shape[:2]:
        raise DataError(f"ground truth {plan.ground_truth[path.stem]} is {truth.shape[1]}x{truth.shape[0]} "
                        f"but {path} is {picture.shape[1]}x{picture.shape[0]}")
    return path, picture, truth


def predict_group(net, inputs, ctxs, config: PredictConfig, classes: Sequence[str],
                  palette: Optional[np.ndarray] = None) -> None:
    """Predict up to one image per context, all queued before any result is read (so the contexts run
    together), and write each one's files."""
    results = []
    for (_, picture, _), ctx in zip(inputs, ctxs):
        batch = image_to_batch(picture, ctx)
        if config.save_probs:
            probs = predict_probs(net, batch, config.scales, config.flip)
            results.append((class_map(probs), probs[0]))
        else:
            results.append((predict_labels(net, batch, config.scales, config.flip), None))
    for (path, picture, truth), (labels, probs) in zip(inputs, results):
        write_outputs(config.output_dir, path.stem, picture, labels.asnumpy(),
                      None if probs is None else probs.asnumpy(), classes, config.overlay_alpha, truth, palette)


# ------------------------------------------------------------------------------------------ command line

def prepare(config: PredictConfig) -> PredictionPlan:
    """Open the checkpoint and find every input before any work; :class:`UsageError` naming the first problem."""
    checkpoint = checkpoint_flag(config.checkpoint)
    if checkpoint.spec.num_classes > 256:
        raise UsageError(f"{checkpoint.path} predicts {checkpoint.spec.num_classes} classes; "
                         f"palette PNGs hold at most 256")
    try:
        images = collect_inputs(config.input, config.strict)
    except OSError as err:  # a list file that cannot be read
        raise UsageError(f"--input: {err}") from None
    images = images[:config.limit]  # None: all
    check_output_names(images, config.output_dir)
    ground_truth = ground_truth_files(images, config.compare_gt) if config.compare_gt is not None else None
    return PredictionPlan(checkpoint, images, ground_truth)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit codes: 2 for a flag or input refused before any work, 1 when an image could not be read
    or an output not written, 130 when interrupted."""
    return run_job(PROG, PredictConfig, lambda config: run_prediction(config, prepare(config)), argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
