"""The training loop: data-parallel SGD over devices, validation, crash-safe checkpoints and resume.

:class:`SegmentationTrainer` owns the network, the Gluon ``Trainer`` and one optimisation step;
:func:`run_training` drives a whole run from a :class:`~deeplab_gluon.train.TrainConfig`.
"""
from __future__ import annotations

import json
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

from .checkpoint import (CheckpointError, checkpoint_name, find_checkpoint, latest_checkpoint, list_checkpoints, load_checkpoint,
                         prune_checkpoints, read_meta, save_checkpoint)
from .devices import parse_devices
from .loss import SegmentationLoss, count_valid
from .models import batchnorm_layers, build_model, parse_backbone
from .runlog import RunLog, plot_curves


STEP_STATS_KEY = 10_000_000  # kvstore key for per-step sums; the Trainer's own keys are 0..len(params)-1


class TrainingError(RuntimeError):
    """A run cannot start or go on; the message says why and what to do."""


def make_lr_schedule(policy: str, base_lr: float, max_iter: int, power: float = 0.9, steps=(0.5, 0.75)):
    """An ``mx.lr_scheduler`` giving the learning rate at an iteration (called with increasing values).

    poly: ``base_lr * (1 - it / max_iter) ** power``; step: ``base_lr`` divided by 10 at each of
    ``steps`` (fractions of ``max_iter``).
    """
    if policy == "poly":
        return mx.lr_scheduler.PolyScheduler(max_update=max_iter, base_lr=base_lr, pwr=power, final_lr=0.0)
    milestones = sorted({max(1, int(round(fraction * max_iter))) for fraction in steps})
    return mx.lr_scheduler.MultiFactorScheduler(step=milestones, factor=0.1, base_lr=base_lr)


def describe_model(config, num_classes: int) -> dict:
    """What a checkpoint records about its network; enough to rebuild it without the config."""
    return {"backbone": f"resnet{parse_backbone(config.base_architecture)}_v2", "head": config.head,
            "num_classes": num_classes, "aux": bool(config.aux), "output_stride": config.output_stride,
            "multi_grid": list(config.multi_grid), "vortex_module": config.vortex_module}


class SegmentationTrainer:
    """One network, its optimiser, and the data-parallel training step.

    The batch is split over ``ctxs`` with ``split_and_load`` and the gradients are added up by the
    ``Trainer``'s kvstore (a ``dist_*`` KVStore object for several machines), so a step on several
    devices or workers is the step one device would take on the whole batch.
    """

    def __init__(self, net, ctxs, learning_rate: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                 ignore_label: int = 255, aux_weight: float = 0.0, head_lr_mult: float = 1.0,
                 kvstore="device", seed: int = 0, max_bad_steps: int = 5):
        self.net, self.ctxs = net, list(ctxs)
        self.ignore_label, self.seed, self.max_bad_steps = ignore_label, seed, max_bad_steps
        if head_lr_mult != 1.0:
            for block in (net.head, net.aux_head):
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
        self.loss_fn = SegmentationLoss(ignore_label=ignore_label, aux_weight=aux_weight)
        self.running_stats = [p for layer in batchnorm_layers(net) if not layer._kwargs.get("use_global_stats")
                              for p in (layer.running_mean, layer.running_var)]
        self.iteration = 0
        self.bad_steps = 0
        self._device_threads = ThreadPoolExecutor(len(self.ctxs)) if len(self.ctxs) > 1 else None

    def train_step(self, images: mx.nd.NDArray, labels: mx.nd.NDArray, learning_rate: float) -> float:
        """One SGD step on a batch. ``images`` (N, 3, H, W), ``labels`` (N, H, W) -> the batch loss.

        Each device back-propagates its share of the cross-entropy *sum*; ``Trainer.step`` then
        divides the reduced gradient by the valid pixels of the whole batch (over all devices and
        workers), which gives exactly the gradient of the batch's mean loss.

        A non-finite loss on any device or worker updates nothing anywhere (weights, momentum and
        BatchNorm statistics stay as they were) and counts as a bad step; :class:`TrainingError`
        after ``max_bad_steps`` in a row.
        """
        image_parts = gluon.utils.split_and_load(images, self.ctxs, even_split=False)
        label_parts = gluon.utils.split_and_load(labels, self.ctxs, even_split=False)
        # dropout masks depend on (seed, iteration) only, so a resumed run draws the same ones
        mx.random.seed(self.seed * 1_000_003 + self.iteration, ctx="all")
        saved_stats = [[data.copy() for data in p.list_data()] for p in self.running_stats]
        self.trainer.set_learning_rate(learning_rate)
        if len(self.ctxs) == 1:
            sums = [self._forward_backward(image_parts[0], label_parts[0])]
        else:
            # One thread per device: SyncBatchNorm blocks each device until all reach the same layer,
            # so the devices' graphs must be issued concurrently, not one after the other.
            sums = list(self._device_threads.map(self._forward_backward, image_parts, label_parts))
        loss_sum = float(sum(part.asscalar() for part in sums))
        finite = math.isfinite(loss_sum)
        loss_sum, num_valid, num_bad = self.reduce_over_workers(
            [loss_sum if finite else 0.0, count_valid(labels, self.ignore_label), 0.0 if finite else 1.0])
        self.iteration += 1
        if num_bad:
            for param, copies in zip(self.running_stats, saved_stats):
                for data, copy in zip(param.list_data(), copies):
                    copy.copyto(data)
            self.bad_steps += 1
            if self.bad_steps >= self.max_bad_steps:
                raise TrainingError(f"{self.bad_steps} non-finite losses in a row (last at iteration "
                                    f"{self.iteration}); stopping with the last checkpoint intact. "
                                    f"Lower --initial_learning_rate or check the data")
            return float("nan")
        self.bad_steps = 0
        self.trainer.step(max(num_valid, 1.0))
        return loss_sum / max(num_valid, 1.0)

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


def _resolve_checkpoint(spec: str, folder: Path) -> Optional[Path]:
    """The checkpoint that ``--resume`` / ``--init_from`` names, or None for a fresh run."""
    spec = str(spec).strip()
    if spec in ("", "-1"):
        return None
    if spec == "last":
        found = latest_checkpoint(folder)
        if found is None:
            raise TrainingError(f"--resume last: no complete checkpoint in {folder}")
        return found
    if spec.isdigit():
        epoch = int(spec)
        for path in reversed(list_checkpoints(folder)):
            meta = read_meta(path)
            if meta.get("end_of_epoch") and meta.get("epoch") == epoch:
                return path
        raise TrainingError(f"--resume {epoch}: no checkpoint from the end of epoch {epoch} in {folder} "
                            f"(kept: {[p.name for p in list_checkpoints(folder)]})")
    try:
        return find_checkpoint(spec)
    except CheckpointError as err:
        raise TrainingError(str(err)) from None


def _build_datasets(config):
    from .data import EvalTransform, TrainTransform, get_dataset, make_toy_dataset, wants_split

    if config.dataset == "toy" and not Path(config.data_dir).is_dir():
        print(f"generating the toy dataset in {config.data_dir}")
        make_toy_dataset(config.data_dir, seed=0)
    extra = {}
    if config.dataset == "folder":
        extra = {"num_classes": config.num_classes, "ignore_label": config.ignore_label}
    train_set = get_dataset(config.dataset, config.data_dir, config.train_split, **extra)
    val_set = get_dataset(config.dataset, config.data_dir, config.val_split, transform=EvalTransform(), **extra) \
        if wants_split(config.val_split) else None  # '' or 'none': no validation
    transform = TrainTransform(crop_size=config.crop_size, scale_range=config.scale_range,
                               ignore_label=config.ignore_label)
    return train_set, val_set, transform


class TrainingRun:
    """One run of :func:`run_training`: set-up, the loop, validation and checkpoints."""

    def __init__(self, config):
        from .data import DataError, palette_colours
        from .data.loader import iterations_per_epoch

        self.config = config
        self.ctxs = parse_devices(config.gpus)
        kvstore = mx.kv.create(config.kvstore) if config.kvstore.startswith("dist") else config.kvstore
        self.rank, self.num_workers = (0, 1) if isinstance(kvstore, str) else (kvstore.rank, kvstore.num_workers)
        self.is_main = self.rank == 0
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"

        resume_path = _resolve_checkpoint(config.resume, self.checkpoint_dir)
        if resume_path is None and list_checkpoints(self.checkpoint_dir):
            raise TrainingError(f"{self.checkpoint_dir} already holds checkpoints: pass --resume last to continue "
                                f"that run, or choose another --output_dir")
        try:
            self.train_set, self.val_set, self.transform = _build_datasets(config)
        except DataError as err:
            raise TrainingError(str(err)) from None
        self.num_classes = config.num_classes or self.train_set.num_classes
        self.iterations_per_epoch = iterations_per_epoch(len(self.train_set), config.batch_size, self.num_workers)
        if self.iterations_per_epoch == 0:
            raise TrainingError(f"{len(self.train_set)} training images cannot fill one batch of {config.batch_size}"
                                + (f" per worker over {self.num_workers} workers" if self.num_workers > 1 else ""))
        self.max_iter = config.max_iter or config.train_epochs * self.iterations_per_epoch
        self.classes = list(self.train_set.classes)
        self.palette = palette_colours(self.train_set)  # so predict draws this dataset's colours

        mx.random.seed(config.seed)
        np.random.seed(config.seed)
        self.model = describe_model(config, self.num_classes)
        init_path = _resolve_checkpoint(config.init_from, self.checkpoint_dir) if config.init_from else None
        self.net = build_model(self.model, self.ctxs, freeze_bn=config.freeze_batch_norm, syncbn=config.syncbn,
                               pretrained_base=None if (resume_path or init_path) else config.pre_trained_model)
        self.net.hybridize(static_alloc=True)
        self.trainer = SegmentationTrainer(self.net, self.ctxs, config.initial_learning_rate, config.momentum,
                                           config.weight_decay, config.ignore_label,
                                           config.aux_weight if config.aux else 0.0, config.head_lr_mult, kvstore,
                                           config.seed, config.max_bad_steps)
        self.schedule = make_lr_schedule(config.lr_policy, config.initial_learning_rate, self.max_iter,
                                         config.lr_power, config.lr_steps)
        self.best_miou, self.last_scores, self.saved_at = -1.0, None, None
        note = "fresh"
        try:
            if resume_path is not None:
                meta = load_checkpoint(resume_path, self.net, self.trainer.trainer, self.ctxs, model=self.model)
                self.trainer.iteration = self.saved_at = int(meta["iteration"])
                self.best_miou = float(meta.get("best_miou", -1.0))
                note = f"resumed from {resume_path} at iteration {self.trainer.iteration}"
            elif init_path is not None:
                load_checkpoint(init_path, self.net, None, self.ctxs, model=self.model,
                                backbone_only=config.load_backbone_only)
                note = f"weights from {init_path}"
        except CheckpointError as err:
            raise TrainingError(str(err)) from None

        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.output_dir / "log.jsonl", enabled=self.is_main)
        if self.is_main:
            (self.output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
            self.log.write("start", iteration=self.trainer.iteration, max_iter=self.max_iter,
                           iterations_per_epoch=self.iterations_per_epoch, devices=[str(c) for c in self.ctxs],
                           worker=self.rank, workers=self.num_workers, note=note, model=self.model)

    def meta(self, metrics=None) -> dict:
        iteration = self.trainer.iteration
        return {"iteration": iteration, "epoch": iteration // self.iterations_per_epoch,
                "end_of_epoch": iteration % self.iterations_per_epoch == 0, "best_miou": self.best_miou,
                "model": self.model, "classes": self.classes, "palette": self.palette,
                "ignore_label": self.config.ignore_label,
                "seed": self.config.seed, "config": self.config.to_dict(), "metrics": metrics}

    def save(self) -> Optional[Path]:
        """Checkpoint the current iteration (worker 0 writes; every worker syncs its statistics)."""
        self.trainer.average_running_stats()
        self.saved_at = self.trainer.iteration
        if not self.is_main:
            return None
        path = self.checkpoint_dir / checkpoint_name(self.trainer.iteration)
        save_checkpoint(path, self.net, self.trainer.trainer, self.meta(self.last_scores))
        prune_checkpoints(self.checkpoint_dir, self.config.keep_checkpoints)
        return path

    def validate(self) -> dict:
        """Score the validation split; keeps ``best.ckpt`` (weights only) when mIoU improves."""
        from .inference import evaluate_dataset

        confusion = evaluate_dataset(self.net, self.val_set, self.ctxs, self.num_classes, self.config.ignore_label,
                                     progress=self.config.progress, desc=f"val @{self.trainer.iteration}")
        metrics = confusion.summary(self.classes)
        self.log.write("val", iteration=self.trainer.iteration,
                       epoch=self.trainer.iteration // self.iterations_per_epoch, **metrics)
        self.last_scores = {"pixAcc": metrics["pixAcc"], "mIoU": metrics["mIoU"]}
        if (metrics["mIoU"] or 0.0) > self.best_miou:
            self.best_miou = metrics["mIoU"]
            save_checkpoint(self.output_dir / "best.ckpt", self.net, None, self.meta(self.last_scores))
        return self.last_scores

    def _loader(self):
        from .data.loader import SeededTransformDataset, TrainBatchSampler

        config = self.config
        bad_sample_log = str(self.output_dir / "bad_samples.txt") if config.skip_bad_samples else None
        seeded = SeededTransformDataset(self.train_set, self.transform, config.seed, bad_sample_log)
        sampler = TrainBatchSampler(len(self.train_set), config.batch_size, config.seed, self.trainer.iteration,
                                    self.max_iter, shard=self.rank, num_shards=self.num_workers)
        return gluon.data.DataLoader(seeded, batch_sampler=sampler, num_workers=config.num_workers)

    def run(self) -> dict:
        from .data import DataError

        config, stop = self.config, {"signal": None}

        def request_stop(signum, _frame):
            stop["signal"] = signum

        # handlers first: forked loader workers inherit them and do not die with a traceback on Ctrl-C
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.max_iter, initial=self.trainer.iteration, desc="train", dynamic_ncols=True,
                   disable=not (config.progress and self.is_main))
        window_start, window_images, smoothed = time.time(), 0, None
        try:
            for images, labels in self._loader():
                lr = self.schedule(self.trainer.iteration)
                try:
                    loss = self.trainer.train_step(images, labels, lr)
                except TrainingError:  # too many non-finite losses: log the last one too
                    self.log.write("nonfinite", iteration=self.trainer.iteration, consecutive=self.trainer.bad_steps)
                    raise
                it = self.trainer.iteration
                window_images += images.shape[0]
                if not math.isfinite(loss):
                    self.log.write("nonfinite", iteration=it, consecutive=self.trainer.bad_steps)
                else:
                    smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
                bar.update(1)
                if it % config.log_every == 0 or it == self.max_iter:
                    speed = window_images / max(time.time() - window_start, 1e-9)
                    self.log.write("train", iteration=it, epoch=it / self.iterations_per_epoch, loss=loss, lr=lr,
                                   images_per_sec=speed)
                    bar.set_postfix(loss=f"{smoothed if smoothed is not None else loss:.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{speed:.1f}")
                    window_start, window_images = time.time(), 0
                end_of_epoch = it % self.iterations_per_epoch == 0
                # only worker 0 validates; the others wait for it at the next gradient reduction
                if self.is_main and self.val_set is not None and (it == self.max_iter or (
                        end_of_epoch and config.val_every
                        and (it // self.iterations_per_epoch) % config.val_every == 0)):
                    scores = self.validate()
                    bar.write(f"iteration {it}: pixAcc {scores['pixAcc']:.4f} mIoU {scores['mIoU']:.4f}")
                if it == self.max_iter or (config.checkpoint_every and it % config.checkpoint_every == 0) or \
                        (not config.checkpoint_every and end_of_epoch):
                    self.save()
                if stop["signal"] is not None:
                    path = self.save() if self.saved_at != it else checkpoint_name(it)
                    name = signal.Signals(stop["signal"]).name
                    self.log.write("stopped", iteration=it, signal=name)
                    raise KeyboardInterrupt(f"stopped by {name} at iteration {it}; checkpoint {path} saved; "
                                            f"continue with --resume last")
        except DataError as err:
            raise TrainingError(f"{err} (--skip_bad_samples 1 skips such samples)") from None
        except CheckpointError as err:  # a checkpoint could not be written (full disk, ...)
            raise TrainingError(str(err)) from None
        finally:
            bar.close()
            # The last step's gradient pushes are asynchronous: a worker that exits before they reach
            # the servers leaves the others waiting forever for that step's pull.
            mx.nd.waitall()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        summary = {"iteration": self.trainer.iteration, "max_iter": self.max_iter, "best_mIoU": self.best_miou,
                   "final": self.last_scores}
        if self.is_main:
            self.log.write("end", **summary)
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            plot_curves(self.output_dir / "log.jsonl", self.output_dir / "curves.png")
        return summary


def run_training(config) -> dict:
    """Train as ``config`` says; returns a summary (iteration, best and final metrics).

    Raises :class:`TrainingError` for problems the user must fix (bad data, a checkpoint that does
    not fit, a full disk, diverging losses), ``KeyboardInterrupt`` after SIGINT/SIGTERM (with a
    checkpoint saved first).
    """
    return TrainingRun(config).run()
