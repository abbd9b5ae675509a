"""The training run: data-parallel SGD over devices, validation, crash-safe checkpoints and resume.

:func:`run_training` reads top to bottom: where to start, the data, the network and its trainer, then
the loop (set lr -> step -> log -> validate? -> checkpoint? -> stop?). :class:`SegmentationTrainer`
owns the network's optimiser and one data-parallel step.
"""
from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

from .checkpoint import (Checkpoint, CheckpointError, checkpoint_flag, checkpoint_name, list_checkpoints,
                         prune_checkpoints)
from .errors import JobError, UsageError
from .cpu_threads import current_choice
from .data import (DataError, EvalTransform, TrainTransform, get_dataset, make_toy_dataset, palette_colours,
                   wants_split)
from .data.class_weights import resolve_class_weights
from .data.loader import SeededTransformDataset, TrainBatchSampler, iterations_per_epoch, log_bad_sample
from .devices import parse_devices
from .inference import evaluate_dataset
from .loss import SegmentationLoss, valid_weight
from .models import ModelSpec, build_model
from .models.backbones.base import PretrainedFileError
from .models.deeplab import batchnorm_layers
from .run_lock import RunFolderLocked, run_folder_lock
from .runlog import RunLog, plot_curves

STEP_STATS_KEY = 10_000_000  # kvstore key for per-step sums; the Trainer's own keys are 0..len(params)-1
LOCK_AGREEMENT_KEY = 10_000_001  # kvstore key on which the workers learn whether worker 0 holds the run folder


class TrainingError(JobError):
    """A run cannot start or go on; the message says why and what to do."""


class DivergedError(TrainingError):
    """Too many non-finite losses in a row."""


def make_lr_schedule(policy: str, base_lr: float, max_iter: int, power: float = 0.9, steps=(0.5, 0.75),
                     warmup: int = 0):
    """An ``mx.lr_scheduler`` giving the learning rate at an iteration (called with increasing values).

    poly: ``base_lr * (1 - (it - warmup) / (max_iter - warmup)) ** power``; step: ``base_lr`` divided by
    10 at each of ``steps`` (fractions of ``max_iter``). The first ``warmup`` iterations rise linearly
    from 0 to ``base_lr``.
    """
    warmup_options = {"warmup_steps": warmup, "warmup_begin_lr": 0.0} if warmup else {}
    if policy == "poly":
        return mx.lr_scheduler.PolyScheduler(max_update=max_iter, base_lr=base_lr, pwr=power, final_lr=0.0,
                                             **warmup_options)
    milestones = sorted({max(1, int(round(fraction * max_iter))) for fraction in steps})
    return mx.lr_scheduler.MultiFactorScheduler(step=milestones, factor=0.1, base_lr=base_lr, **warmup_options)


class SegmentationTrainer:
    """One network, its optimiser, and the data-parallel training step.

    The batch is split over ``ctxs`` with ``split_and_load`` and the gradients are added up by the
    ``Trainer``'s kvstore (a ``dist_*`` KVStore object for several machines), so a step on several
    devices or workers is the step one device would take on the whole batch.
    """

    def __init__(self, net, ctxs, *, learning_rate: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                 ignore_label: int = 255, aux_weight: float = 0.0, head_lr_mult: float = 1.0,
                 kvstore="device", seed: int = 0, max_bad_steps: int = 5, iter_size: int = 1, class_weights=None):
        self.net, self.ctxs = net, list(ctxs)
        self.ignore_label, self.seed, self.max_bad_steps, self.iter_size = ignore_label, seed, max_bad_steps, iter_size
        self.learned = [p for p in net.collect_params().values() if p.grad_req != "null"]
        if iter_size > 1:  # gradients of the iter_size passes add up until the update
            for param in self.learned:
                param.grad_req = "add"
        if head_lr_mult != 1.0:
            for block in (net.head, net.aux_head, net.decoder):
                if block is not None:
                    for param in block.collect_params().values():
                        param.lr_mult = head_lr_mult
        # update_on_kvstore=False: every device applies SGD to the reduced gradients itself, so the
        # per-step normaliser given to step() takes effect (a server-side optimizer keeps its first one)
        self.trainer = gluon.Trainer(net.collect_params(), "sgd",
                                     {"learning_rate": learning_rate, "momentum": momentum, "wd": weight_decay},
                                     kvstore=kvstore, update_on_kvstore=False)
        self.kvstore = None if isinstance(kvstore, str) or kvstore is None else kvstore
        if self.kvstore is not None:
            self.kvstore.init(STEP_STATS_KEY, mx.nd.zeros(3))
            # Gluon initialises the kvstore lazily in the first step(), after the first backward pass;
            # doing it now gives every worker worker 0's weights before any gradient is computed.
            self.trainer._init_kvstore()
            self.trainer._init_params()
        self.class_weights = class_weights
        self.loss_fn = SegmentationLoss(ignore_label=ignore_label, aux_weight=aux_weight, class_weights=class_weights)
        self.running_stats = [p for layer in batchnorm_layers(net) if not layer._kwargs.get("use_global_stats")
                              for p in (layer.running_mean, layer.running_var)]
        self.iteration = self.bad_steps = 0
        self._device_threads = ThreadPoolExecutor(len(self.ctxs)) if len(self.ctxs) > 1 else None

    def train_step(self, images: mx.nd.NDArray, labels: mx.nd.NDArray, learning_rate: float) -> float:
        """One SGD update on a batch. ``images`` (N, 3, H, W), ``labels`` (N, H, W) -> the batch loss.

        Each device back-propagates its share of the cross-entropy *sum*; ``Trainer.step`` then
        divides the reduced gradient by the valid pixels of the whole batch (over all devices and
        workers), which gives exactly the gradient of the batch's mean loss. With ``iter_size`` K
        the batch goes through in K passes of N/K images whose gradients add up before the one
        update (gradient accumulation: the memory of N/K images, the update of N).

        A non-finite loss on any device or worker updates nothing anywhere (weights, momentum and
        BatchNorm statistics stay as they were) and counts as a bad step; :class:`TrainingError`
        after ``max_bad_steps`` in a row.
        """
        # dropout masks depend on (seed, iteration) only, so a resumed run draws the same ones
        mx.random.seed(self.seed * 1_000_003 + self.iteration, ctx="all")
        saved_stats = [[data.copy() for data in p.list_data()] for p in self.running_stats]
        self.trainer.set_learning_rate(learning_rate)
        size = images.shape[0] // self.iter_size
        sums = [part for start in range(0, size * self.iter_size, size)
                for part in self._backward_on_devices(images[start:start + size], labels[start:start + size])]
        loss_sum = float(sum(part.asscalar() for part in sums))
        finite = math.isfinite(loss_sum)
        loss_sum, num_valid, num_bad = self.reduce_over_workers(
            [loss_sum if finite else 0.0, valid_weight(labels, self.ignore_label, self.class_weights),
             0.0 if finite else 1.0])
        self.iteration += 1
        if num_bad:
            for param, copies in zip(self.running_stats, saved_stats):
                for data, copy in zip(param.list_data(), copies):
                    copy.copyto(data)
            self._clear_gradients()
            self.bad_steps += 1
            if self.bad_steps >= self.max_bad_steps:
                raise DivergedError(f"{self.bad_steps} non-finite losses in a row (last at iteration "
                                    f"{self.iteration}); stopping with the last checkpoint intact. "
                                    f"Lower --initial_learning_rate or check the data")
            return float("nan")
        self.bad_steps = 0
        denominator = num_valid if num_valid > 0 else 1.0  # no valid pixel: a zero loss and gradient
        self.trainer.step(denominator)
        self._clear_gradients()
        return loss_sum / denominator

    def _clear_gradients(self) -> None:
        if self.iter_size > 1:  # accumulated ("add") gradients would carry into the next update
            for param in self.learned:
                param.zero_grad()

    def _backward_on_devices(self, images, labels) -> list:
        """Forward and backward of one pass, split over the devices; each device's loss sum, shape (1,)."""
        image_parts = gluon.utils.split_and_load(images, self.ctxs, even_split=False)
        label_parts = gluon.utils.split_and_load(labels, self.ctxs, even_split=False)
        if len(self.ctxs) == 1:
            return [self._forward_backward(image_parts[0], label_parts[0])]
        # One thread per device: SyncBatchNorm blocks each device until all reach the same layer,
        # so the devices' graphs must be issued concurrently, not one after the other.
        return list(self._device_threads.map(self._forward_backward, image_parts, label_parts))

    def _forward_backward(self, images, labels):
        """Forward and backward on one device; returns that device's loss sum, shape (1,)."""
        with autograd.record():
            loss_sum = self.loss_fn(self.net(images), labels, 1)
        loss_sum.backward()
        return loss_sum

    def reduce_over_workers(self, values):
        """Sum a few numbers over all workers of a distributed kvstore (identity in one process)."""
        if self.kvstore is None:
            return values
        local = mx.nd.array(values)
        self.kvstore.push(STEP_STATS_KEY, local)
        self.kvstore.pull(STEP_STATS_KEY, out=local)
        return [float(v) for v in local.asnumpy()]

    def average_running_stats(self) -> None:
        """Give every device the mean of the devices' BatchNorm statistics (before a checkpoint)."""
        if len(self.ctxs) > 1:
            for param in self.running_stats:
                copies = param.list_data()
                param.set_data(mx.nd.add_n(*[c.as_in_context(mx.cpu()) for c in copies]) / len(copies))


# ------------------------------------------------------------------------------------ the run's steps

@dataclass
class Workers:
    """The processes of one run: a ``dist_*`` kvstore with this worker's rank, or one process."""
    kvstore: object = "device"
    rank: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        """Worker 0 writes the run folder (checkpoints, logs) and validates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return not isinstance(self.kvstore, str)


def connect_workers(kvstore: str) -> Workers:
    """``--kvstore``: a ``dist_*`` kvstore joins the other workers (and learns this one's rank)."""
    if kvstore.startswith("dist"):
        store = mx.kv.create(kvstore)
        return Workers(store, store.rank, store.num_workers)
    return Workers(kvstore)


@contextlib.contextmanager
def exclusive_run_folder(output_dir, workers: Workers) -> Iterator[None]:
    """Worker 0 holds ``output_dir``'s lock for the ``with`` block (:mod:`~deeplab_gluon.run_lock`).

    The workers of a distributed run share worker 0's folder and take no lock; they learn whether
    worker 0 got it, so that none waits forever for a worker 0 that was refused.
    """
    with contextlib.ExitStack() as held:
        refusal = None
        try:
            held.enter_context(run_folder_lock(output_dir, enabled=workers.is_main))
        except RunFolderLocked as err:
            refusal = err
        if workers.distributed:
            flag = mx.nd.array([1.0 if refusal else 0.0])
            workers.kvstore.init(LOCK_AGREEMENT_KEY, mx.nd.zeros(1))
            workers.kvstore.push(LOCK_AGREEMENT_KEY, flag)
            workers.kvstore.pull(LOCK_AGREEMENT_KEY, out=flag)
            if flag.asscalar() > 0 and refusal is None:
                refusal = RunFolderLocked(f"worker 0 could not lock --output_dir {output_dir} (see its message)")
        if refusal is not None:
            raise refusal
        yield

@dataclass
class StartingPoint:
    """Where a run starts: a checkpoint of this run to resume, or one to take weights from, or neither."""
    resume: Optional[Checkpoint] = None
    init: Optional[Checkpoint] = None
    note: str = "fresh"
    config_changes: List[str] = field(default_factory=list)  # accepted by --allow_config_change 1


def starting_point(resume: str, init_from: str, checkpoint_dir: Path) -> StartingPoint:
    """Resolve ``--resume`` (``-1``, ``last``, an epoch number, a file) and ``--init_from`` (a file or a
    run folder, never an epoch) against this run's ``checkpoint_dir``.

    :class:`UsageError` (exit code 2) when the command cannot start as given: a fresh run into a folder
    that holds checkpoints, or a checkpoint that is missing or damaged.
    """
    resume = str(resume).strip()
    try:
        if resume in ("", "-1"):
            if list_checkpoints(checkpoint_dir):
                raise UsageError(f"{checkpoint_dir} already holds checkpoints: pass --resume last to continue "
                                 f"that run, or choose another --output_dir")
            found, note = None, "fresh"
        elif resume == "last":
            found = Checkpoint.latest(checkpoint_dir)
            note = f"--resume last: no checkpoint in {checkpoint_dir} yet, starting fresh" if found is None else ""
        elif resume.isdigit():
            found, note = Checkpoint.of_epoch(checkpoint_dir, int(resume)), ""
        else:
            found, note = Checkpoint.open(resume), ""
    except CheckpointError as err:
        raise UsageError(f"--resume {resume}: {err}") from None
    if found is not None:
        return StartingPoint(resume=found, note=f"resumed from {found.path} at iteration {found.iteration}")
    if init_from:
        init = checkpoint_flag(init_from, "--init_from")
        return StartingPoint(init=init, note=f"weights from {init.path}")
    return StartingPoint(note=note)


def resumed_config_changes(config, resumed: Checkpoint) -> List[str]:
    """The flags (``recipe`` ones: data, model, schedule, seed) in which ``config`` differs from the run
    that wrote ``resumed``; :class:`UsageError` naming each, unless ``--allow_config_change 1``.

    A resumed run that keeps them continues exactly as an uninterrupted run would; one that changes
    them (e.g. the learning rate) rebuilds its schedule mid-run, and its record would no longer
    describe its first part.
    """
    saved = resumed.meta.get("config")
    if not isinstance(saved, dict):
        if config.allow_config_change:
            return ["(the checkpoint records no training config)"]
        raise UsageError(f"--resume: {resumed.path} records no training config, so its flags cannot be compared "
                         f"with these; pass --allow_config_change 1 to resume from it anyway")
    changes = config.recipe_changes(saved)
    phase_change = [change for change in changes if change.startswith(("--output_stride", "--freeze_batch_norm"))]
    if phase_change:  # even with --allow_config_change: best.ckpt and the record would mix two phases
        folder = Path(config.output_dir)
        raise UsageError(f"--resume: {', '.join(phase_change)} starts a new phase of the recipe, which goes into "
                         f"its own folder: pass --init_from {folder} --output_dir {folder.parent / (folder.name + '_phase2')}"
                         f" instead of --resume (as sh_train.sh does)")
    if changes and not config.allow_config_change:
        raise UsageError(f"--resume: {resumed.path} was trained with other settings: {', '.join(changes)}; a resumed "
                         f"run keeps them to continue exactly: pass --allow_config_change 1 to change them anyway, "
                         f"or start a new run from its weights with --init_from and another --output_dir")
    return changes


@dataclass
class TrainingData:
    """The datasets of a run and the lengths they imply."""
    train_set: object
    val_set: Optional[object]
    transform: object
    classes: List[str]
    iterations_per_epoch: int
    max_iter: int


def load_data(config, num_workers: int = 1) -> TrainingData:
    """The training and validation sets ``config`` names (the toy set is written when absent)."""
    if config.dataset == "toy" and not Path(config.data_dir).is_dir():
        print(f"generating the toy dataset in {config.data_dir}")
        make_toy_dataset(config.data_dir, seed=0)
    extra = {"num_classes": config.num_classes, "ignore_label": config.ignore_label,
             "class_file": config.class_list or None} if config.dataset == "folder" else {}
    try:
        train_set = get_dataset(config.dataset, config.data_dir, config.training_split, **extra)
        val_set = get_dataset(config.dataset, config.data_dir, config.val_split, transform=EvalTransform(), **extra) \
            if wants_split(config.val_split) else None  # '' or 'none': no validation
    except DataError as err:
        raise TrainingError(str(err)) from None
    if val_set is not None:
        val_set = checked_validation_set(val_set, config)
    if val_set is not None and config.val_limit:
        val_set = val_set.take(config.val_limit)
    per_epoch = iterations_per_epoch(len(train_set), config.batch_size * config.iter_size, num_workers)
    if per_epoch == 0:
        raise TrainingError(f"{len(train_set)} training images cannot fill one batch of "
                            f"{config.batch_size * config.iter_size}"
                            + (f" per worker over {num_workers} workers" if num_workers > 1 else ""))
    transform = TrainTransform(crop_size=config.crop_size, scale_range=config.scale_range,
                               ignore_label=config.ignore_label, blur=config.blur, color_jitter=config.color_jitter)
    return TrainingData(train_set, val_set, transform, list(train_set.classes), per_epoch,
                        config.max_iter or config.train_epochs * per_epoch)


def checked_validation_set(val_set, config):
    """``val_set`` once its files are checked, before any training: a bad one would otherwise stop the run
    at its first validation. With ``--skip_bad_samples`` the bad ones are left out (and logged), else the
    run does not start."""
    bad = val_set.bad_samples(progress=config.progress)
    if not bad:
        return val_set
    if not config.skip_bad_samples:
        raise TrainingError(f"validation split: {bad[0][1]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                            + "; fix it, or pass --skip_bad_samples 1 to leave bad samples out")
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    for _, message in bad:
        log_bad_sample(str(Path(config.output_dir) / "bad_samples.txt"), message)
    left_out = {index for index, _ in bad}
    return val_set.subset([index for index in range(len(val_set)) if index not in left_out])


def should_validate(iteration: int, max_iter: int, iterations_per_epoch: int, val_every: int,
                    val_every_iter: int = 0) -> bool:
    """At the last iteration, and every ``val_every_iter`` iterations, or else at the end of every
    ``val_every``-th epoch (both 0: only the last)."""
    if iteration == max_iter or val_every_iter:
        return iteration == max_iter or iteration % val_every_iter == 0
    epoch, within = divmod(iteration, iterations_per_epoch)
    return bool(val_every and within == 0 and epoch % val_every == 0)


def should_checkpoint(iteration: int, max_iter: int, iterations_per_epoch: int, checkpoint_every: int) -> bool:
    """At the last iteration, and every ``checkpoint_every`` iterations (0: at the end of each epoch)."""
    return iteration == max_iter or iteration % (checkpoint_every or iterations_per_epoch) == 0


@contextlib.contextmanager
def stop_requests() -> Iterator[List[int]]:
    """Turn SIGINT and SIGTERM into requests the loop answers after its step (with a checkpoint): the
    signals received, in a list the ``with`` block sees grow."""
    requests: List[int] = []

    def note(signum, _frame):
        requests.append(signum)

    # handlers first: forked loader workers inherit them and do not die with a traceback on Ctrl-C
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class TrainingRun:
    """What a run keeps between steps: its folder, log, progress bar, network, trainer and scores."""

    def __init__(self, config, spec: ModelSpec, data: TrainingData, net, trainer: SegmentationTrainer,
                 ctxs, workers: Workers):
        self.config, self.spec, self.data, self.net, self.trainer, self.ctxs = config, spec, data, net, trainer, ctxs
        self.workers, self.is_main = workers, workers.is_main
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.log = RunLog(self.output_dir / "log.jsonl", enabled=self.is_main)
        self.best_miou, self.best_iteration, self.last_scores, self.saved_at = -1.0, None, None, None
        self.bar = None
        self.window_start, self.window_images, self.smoothed = time.time(), 0, None

    def begin(self, start: StartingPoint) -> None:
        """The segment's config file, the log's ``start`` line (worker 0) and the progress bar.

        Every segment's flags are kept: a fresh run writes ``config.json``, each resume
        ``config-resume-<iteration>.json`` beside it (``config.json`` stays the first segment's).
        """
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            it = self.trainer.iteration
            name = "config.json" if start.resume is None else f"config-resume-{it:07d}.json"
            threads = current_choice()
            print(threads.describe())
            (self.output_dir / name).write_text(json.dumps({**self.config.to_dict(), "cpu_threads": threads.as_dict()},
                                                           indent=1))
            if start.note.startswith("--resume last"):
                print(start.note)
            if start.config_changes:
                print(f"--allow_config_change 1: resuming at iteration {it} with {', '.join(start.config_changes)}")
            data = [split.describe() for split in (self.data.train_set, self.data.val_set) if split is not None]
            print("\n".join(data))
            self.log.write("start", data=data, iteration=it, max_iter=self.data.max_iter,
                           iterations_per_epoch=self.data.iterations_per_epoch, devices=[str(c) for c in self.ctxs],
                           worker=self.workers.rank, workers=self.workers.count, note=start.note,
                           config_changes=start.config_changes, config_file=name, model=self.spec.to_dict(),
                           cpu_threads=threads.as_dict())
        self.bar = tqdm(total=self.data.max_iter, initial=self.trainer.iteration, desc="train", dynamic_ncols=True,
                        disable=not (self.config.progress and self.is_main))

    def report(self, loss: float, lr: float, images: int) -> None:
        """Advance the bar; every ``log_every`` steps a ``train`` log line (loss, lr, images per second)."""
        it = self.trainer.iteration
        self.window_images += images
        if not math.isfinite(loss):
            self.log.write("nonfinite", iteration=it, consecutive=self.trainer.bad_steps)
        else:
            self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        self.bar.update(1)
        if it % self.config.log_every == 0 or it == self.data.max_iter:
            speed = self.window_images / max(time.time() - self.window_start, 1e-9)
            self.log.write("train", iteration=it, epoch=it / self.data.iterations_per_epoch, loss=loss, lr=lr,
                           images_per_sec=speed)
            self.bar.set_postfix(loss=f"{self.smoothed if self.smoothed is not None else loss:.4f}", lr=f"{lr:.2e}",
                                 img_s=f"{speed:.1f}")
            self.window_start, self.window_images = time.time(), 0

    def meta(self) -> dict:
        iteration, per_epoch = self.trainer.iteration, self.data.iterations_per_epoch
        return {"iteration": iteration, "epoch": iteration // per_epoch, "end_of_epoch": iteration % per_epoch == 0,
                "best_miou": self.best_miou, "best_iteration": self.best_iteration, "model": self.spec.to_dict(), "classes": self.data.classes,
                "palette": palette_colours(self.data.train_set), "ignore_label": self.config.ignore_label,
                "seed": self.config.seed, "config": self.config.to_dict(),
                "metrics": self.last_scores}

    def save(self) -> Optional[Path]:
        """Checkpoint the current iteration (worker 0 writes; every worker syncs its statistics)."""
        self.trainer.average_running_stats()
        self.saved_at = self.trainer.iteration
        if not self.is_main:
            return None
        path = self.checkpoint_dir / checkpoint_name(self.trainer.iteration)
        Checkpoint.write(path, self.net, self.trainer.trainer, self.meta())
        prune_checkpoints(self.checkpoint_dir, self.config.keep_checkpoints)
        return path

    def validate(self) -> None:
        """Score the validation split and keep ``best.ckpt`` (weights only) when mIoU improves; if the
        validation data fails, save the training done before saying so."""
        it = self.trainer.iteration
        try:
            confusion = evaluate_dataset(self.net, self.data.val_set, self.ctxs, self.spec.num_classes,
                                         self.config.ignore_label, progress=self.config.progress, desc=f"val @{it}")
        except DataError as err:
            path = self.save() if self.saved_at != it else None
            raise TrainingError(f"validation failed: {err}; training up to iteration {it} is saved"
                                + (f" in {path}" if path else "")) from None
        metrics = confusion.summary(self.data.classes)
        self.log.write("val", iteration=it, epoch=it // self.data.iterations_per_epoch, **metrics)
        self.last_scores = {"pixAcc": metrics["pixAcc"], "mIoU": metrics["mIoU"]}
        if metrics["mIoU"] is not None and metrics["mIoU"] > self.best_miou:  # None: no valid pixel was scored
            self.best_miou, self.best_iteration = metrics["mIoU"], it
            Checkpoint.write(self.output_dir / "best.ckpt", self.net, None, self.meta())
        text = {key: "n/a" if value is None else f"{value:.4f}" for key, value in self.last_scores.items()}
        self.bar.write(f"iteration {it}: pixAcc {text['pixAcc']} mIoU {text['mIoU']}")

    def loader(self):
        config = self.config
        bad_sample_log = str(self.output_dir / "bad_samples.txt") if config.skip_bad_samples else None
        seeded = SeededTransformDataset(self.data.train_set, self.data.transform, config.seed, bad_sample_log)
        sampler = TrainBatchSampler(len(self.data.train_set), config.batch_size * config.iter_size, config.seed,
                                    self.trainer.iteration, self.data.max_iter, shard=self.workers.rank,
                                    num_shards=self.workers.count)
        return gluon.data.DataLoader(seeded, batch_sampler=sampler, num_workers=config.num_workers)

    def stop(self, signal_name: str) -> None:
        """Answer a stop request: checkpoint this iteration (unless just done), then ``KeyboardInterrupt``."""
        it = self.trainer.iteration
        path = self.save() if self.saved_at != it else checkpoint_name(it)
        self.log.write("stopped", iteration=it, signal=signal_name)
        raise KeyboardInterrupt(f"stopped by {signal_name} at iteration {it}; checkpoint {path} saved; "
                                f"continue with --resume last")

    def end(self) -> dict:
        """``summary.json``, the log's ``end`` line and ``curves.png`` (worker 0); returns the summary."""
        summary = {"iteration": self.trainer.iteration, "max_iter": self.data.max_iter,
                   "best_mIoU": None if self.best_miou < 0 else self.best_miou, "best_iteration": self.best_iteration,
                   "final": self.last_scores}
        if self.is_main:
            self.log.write("end", **summary)
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            plot_curves(self.output_dir / "log.jsonl", self.output_dir / "curves.png")
        return summary


def prepare_run(config, workers: Workers) -> Optional[tuple]:
    """Everything before the first step: ``(run, start)``, or None when the run is already finished
    (said on stdout; nothing in its folder is touched)."""
    ctxs = parse_devices(config.gpus)
    start = starting_point(config.resume, config.init_from, Path(config.output_dir) / "checkpoints")
    if start.resume is not None:
        start.config_changes = resumed_config_changes(config, start.resume)
    data = load_data(config, workers.count)
    if start.resume is not None and start.resume.iteration >= data.max_iter:
        print(f"already finished at iteration {start.resume.iteration} ({start.resume.path}); nothing to do")
        return None
    spec = ModelSpec.from_config(config, num_classes=config.num_classes or len(data.classes))
    class_weights = None
    if config.class_weights:
        try:
            class_weights = resolve_class_weights(config.class_weights, data.train_set, progress=config.progress)
        except DataError as err:
            raise TrainingError(f"--class_weights: {err}") from None
    mx.random.seed(config.seed)
    np.random.seed(config.seed)
    try:
        net = build_model(spec, ctxs, freeze_bn=config.freeze_bn, syncbn=config.syncbn,
                          pretrained_base=None if (start.resume or start.init) else config.pretrained_backbone or None)
    except PretrainedFileError as err:  # the ImageNet file does not fit the backbone
        raise TrainingError(f"--pre_trained_model: {err}") from None
    except ValueError as err:  # flags the backbone refuses, e.g. --multi_grid for MobileNetV2
        raise UsageError(str(err)) from None
    net.hybridize(static_alloc=True)
    trainer = SegmentationTrainer(net, ctxs, learning_rate=config.learning_rate, momentum=config.momentum,
                                  weight_decay=config.weight_decay, ignore_label=config.ignore_label,
                                  aux_weight=config.aux_weight if config.aux else 0.0, head_lr_mult=config.head_lr_mult,
                                  kvstore=workers.kvstore, seed=config.seed, max_bad_steps=config.max_bad_steps,
                                  iter_size=config.iter_size, class_weights=class_weights)
    run = TrainingRun(config, spec, data, net, trainer, ctxs, workers)
    try:
        if start.resume is not None:
            start.resume.load_into(net, trainer.trainer, ctxs, expect=spec)
            trainer.iteration = run.saved_at = int(start.resume.iteration)
            best = start.resume.meta.get("best_miou")
            run.best_miou = -1.0 if best is None else float(best)
            run.best_iteration = start.resume.meta.get("best_iteration")
        elif start.init is not None:
            start.init.load_into(net, None, ctxs, expect=spec, backbone_only=config.load_backbone_only)
    except CheckpointError as err:  # it does not fit the model these flags describe: a usage error
        hint = "; pass --load_backbone_only 1 to take its backbone alone" if start.init else \
            "; to start a run of another model from it, pass --init_from with a new --output_dir"
        raise UsageError(f"{'--init_from' if start.init else '--resume'}: {err}{hint}") from None
    return run, start


@contextlib.contextmanager
def failures_explained(run: TrainingRun):
    """Turn what can stop a run into one-line :class:`TrainingError` s, and always end the step cleanly."""
    try:
        yield
    except DivergedError:
        run.log.write("nonfinite", iteration=run.trainer.iteration, consecutive=run.trainer.bad_steps)
        raise
    except DataError as err:
        raise TrainingError(f"{err} (--skip_bad_samples 1 skips such samples)") from None
    except CheckpointError as err:  # a checkpoint could not be written (full disk, ...)
        raise TrainingError(str(err)) from None
    finally:
        run.bar.close()
        # The last step's gradient pushes are asynchronous: a worker that exits before they reach
        # the servers leaves the others waiting forever for that step's pull.
        mx.nd.waitall()


def run_training(config) -> dict:
    """Train as ``config`` (a :class:`~deeplab_gluon.train.TrainConfig`) says; returns the summary.

    The run folder is locked (worker 0) from before its checkpoints are read to the end. Raises
    :class:`UsageError` when the run cannot start as asked (folder locked, a checkpoint missing,
    damaged or of other flags), :class:`TrainingError` when the work fails (bad data, a full disk,
    diverging losses), ``KeyboardInterrupt`` after SIGINT/SIGTERM (with a checkpoint saved first).
    """
    workers = connect_workers(config.kvstore)
    with exclusive_run_folder(config.output_dir, workers):
        prepared = prepare_run(config, workers)
        if prepared is None:
            return {}
        run, start = prepared
        run.begin(start)
        data, trainer = run.data, run.trainer
        schedule = make_lr_schedule(config.lr_policy, config.learning_rate, data.max_iter, config.lr_power,
                                    config.lr_steps, config.warmup_iters)
        with failures_explained(run), stop_requests() as stop:
            for images, labels in run.loader():
                lr = schedule(trainer.iteration)
                loss = trainer.train_step(images, labels, lr)
                it = trainer.iteration
                run.report(loss, lr, images.shape[0])
                # only worker 0 validates; the others wait for it at the next gradient reduction
                if run.is_main and data.val_set is not None and should_validate(
                        it, data.max_iter, data.iterations_per_epoch, config.val_every, config.val_every_iter):
                    run.validate()
                if should_checkpoint(it, data.max_iter, data.iterations_per_epoch, config.checkpoint_every):
                    run.save()
                if stop:
                    run.stop(signal.Signals(stop[-1]).name)
        return run.end()
