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
    from .data import EvalTransform, TrainTransform, get_dataset, make_toy_dataset

    if config.dataset == "toy" and not Path(config.data_dir).is_dir():
        print(f"generating the toy dataset in {config.data_dir}")
        make_toy_dataset(config.data_dir, seed=0)
    extra = {}
    if config.dataset == "folder":
        extra = {"num_classes": config.num_classes, "ignore_label": config.ignore_label}
    train_set = get_dataset(config.dataset, config.data_dir, config.train_split, **extra)
    val_set = get_dataset(config.dataset, config.data_dir, config.val_split, transform=EvalTransform(), **extra) \
        if config.val_split else None
    transform = TrainTransform(crop_size=config.crop_size, ignore_label=config.ignore_label)
    return train_set, val_set, transform


def run_training(config) -> dict:
    """Train as ``config`` says; returns a summary (iteration, best and final metrics).

    Raises :class:`TrainingError` for problems the user must fix, ``KeyboardInterrupt`` after
    SIGINT/SIGTERM (with a checkpoint saved first).
    """
    from .data import DataError
    from .data.loader import SeededTransformDataset, TrainBatchSampler, iterations_per_epoch
    from .inference import evaluate_dataset

    ctxs = parse_devices(config.gpus)
    kvstore = mx.kv.create(config.kvstore) if config.kvstore.startswith("dist") else config.kvstore
    rank, num_workers = (kvstore.rank, kvstore.num_workers) if not isinstance(kvstore, str) else (0, 1)
    is_main = rank == 0
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"

    resume_path = _resolve_checkpoint(config.resume, checkpoint_dir)
    if resume_path is None and list_checkpoints(checkpoint_dir):
        raise TrainingError(f"{checkpoint_dir} already holds checkpoints: pass --resume last to continue that run, "
                            f"or choose another --output_dir")
    try:
        train_set, val_set, transform = _build_datasets(config)
    except DataError as err:
        raise TrainingError(str(err)) from None
    num_classes = config.num_classes or train_set.num_classes
    ipe = iterations_per_epoch(len(train_set), config.batch_size, num_workers)
    if ipe == 0:
        raise TrainingError(f"{len(train_set)} training images cannot fill one batch of {config.batch_size}"
                            f"{f' per worker over {num_workers} workers' if num_workers > 1 else ''}")
    max_iter = config.max_iter or config.train_epochs * ipe

    mx.random.seed(config.seed)
    np.random.seed(config.seed)
    model = describe_model(config, num_classes)
    init_path = _resolve_checkpoint(config.init_from, checkpoint_dir) if config.init_from else None
    net = build_model(model, ctxs, freeze_bn=config.freeze_batch_norm, syncbn=config.syncbn,
                      pretrained_base=None if (resume_path or init_path) else config.pre_trained_model)
    net.hybridize(static_alloc=True)
    trainer = SegmentationTrainer(net, ctxs, config.initial_learning_rate, config.momentum, config.weight_decay,
                                  config.ignore_label, config.aux_weight if config.aux else 0.0,
                                  config.head_lr_mult, kvstore, config.seed, config.max_bad_steps)
    schedule = make_lr_schedule(config.lr_policy, config.initial_learning_rate, max_iter, config.lr_power,
                                config.lr_steps)
    best_miou, history_note = -1.0, "fresh"
    try:
        if resume_path is not None:
            meta = load_checkpoint(resume_path, net, trainer.trainer, ctxs, model=model)
            trainer.iteration = int(meta["iteration"])
            best_miou = float(meta.get("best_miou", -1.0))
            history_note = f"resumed from {resume_path} at iteration {trainer.iteration}"
        elif init_path is not None:
            load_checkpoint(init_path, net, None, ctxs, model=model, backbone_only=config.load_backbone_only)
            history_note = f"weights from {init_path}"
    except CheckpointError as err:
        raise TrainingError(str(err)) from None

    log = RunLog(output_dir / "log.jsonl", enabled=is_main)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        log.write("start", iteration=trainer.iteration, max_iter=max_iter, iterations_per_epoch=ipe,
                  devices=[str(c) for c in ctxs], worker=rank, workers=num_workers, note=history_note,
                  model=model)
    classes = list(getattr(train_set, "classes", [])) or [str(i) for i in range(num_classes)]

    def meta_now(metrics=None):
        return {"iteration": trainer.iteration, "epoch": trainer.iteration // ipe,
                "end_of_epoch": trainer.iteration % ipe == 0, "best_miou": best_miou, "model": model,
                "classes": classes, "ignore_label": config.ignore_label, "seed": config.seed,
                "config": config.to_dict(), "metrics": metrics}

    def save(metrics=None) -> Optional[Path]:
        trainer.average_running_stats()
        if not is_main:
            return None
        path = save_checkpoint(checkpoint_dir / checkpoint_name(trainer.iteration), net, trainer.trainer,
                               meta_now(metrics))
        prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
        return path

    def validate():
        nonlocal best_miou
        confusion = evaluate_dataset(net, val_set, ctxs, num_classes, config.ignore_label,
                                     progress=config.progress, desc=f"val @{trainer.iteration}")
        metrics = confusion.summary(classes)
        scores = {"pixAcc": metrics["pixAcc"], "mIoU": metrics["mIoU"]}
        log.write("val", iteration=trainer.iteration, epoch=trainer.iteration // ipe, **metrics)
        if scores["mIoU"] > best_miou:
            best_miou = scores["mIoU"]
            if is_main:
                save_checkpoint(output_dir / "best.ckpt", net, None, meta_now(scores))
        return scores

    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signum

    previous_handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    seeded = SeededTransformDataset(train_set, transform, config.seed)
    sampler = TrainBatchSampler(len(train_set), config.batch_size, config.seed, trainer.iteration, max_iter,
                                shard=rank, num_shards=num_workers)
    loader = gluon.data.DataLoader(seeded, batch_sampler=sampler, num_workers=config.num_workers)
    bar = tqdm(total=max_iter, initial=trainer.iteration, desc="train", disable=not (config.progress and is_main),
               dynamic_ncols=True)
    last_scores, window_start, window_images, smoothed = None, time.time(), 0, None
    try:
        for images, labels in loader:
            lr = schedule(trainer.iteration)
            loss = trainer.train_step(images, labels, lr)
            it = trainer.iteration
            window_images += images.shape[0]
            if not math.isfinite(loss):
                log.write("nonfinite", iteration=it, loss=str(loss), consecutive=trainer.bad_steps)
            else:
                smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
            bar.update(1)
            if it % config.log_every == 0 or it == max_iter:
                speed = window_images / max(time.time() - window_start, 1e-9)
                log.write("train", iteration=it, epoch=it / ipe, loss=loss, lr=lr, images_per_sec=speed)
                bar.set_postfix(loss=f"{smoothed if smoothed is not None else loss:.4f}", lr=f"{lr:.2e}",
                                img_s=f"{speed:.1f}")
                window_start, window_images = time.time(), 0
            end_of_epoch = it % ipe == 0
            # only worker 0 validates; the others wait for it at the next gradient reduction
            if is_main and val_set is not None and (
                    (end_of_epoch and config.val_every and (it // ipe) % config.val_every == 0) or it == max_iter):
                last_scores = validate()
                bar.write(f"iteration {it}: pixAcc {last_scores['pixAcc']:.4f} mIoU {last_scores['mIoU']:.4f}")
            if it == max_iter or (config.checkpoint_every and it % config.checkpoint_every == 0) or \
                    (not config.checkpoint_every and end_of_epoch):
                save(last_scores)
            if stop["signal"] is not None:
                path = save(last_scores)
                name = signal.Signals(stop["signal"]).name
                log.write("stopped", iteration=it, signal=name)
                raise KeyboardInterrupt(f"stopped by {name} at iteration {it}; checkpoint {path} saved; "
                                        f"continue with --resume last")
    finally:
        bar.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    summary = {"iteration": trainer.iteration, "max_iter": max_iter, "best_mIoU": best_miou, "final": last_scores}
    if is_main:
        log.write("end", **summary)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        plot_curves(output_dir / "log.jsonl", output_dir / "curves.png")
    return summary

