"""Reproducible training batches: which samples, in which order, with which augmentation.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` and the augmentation of
sample ``i`` in epoch ``e`` from ``(seed, e, i)``. Nothing depends on loader workers, on
devices or on where a run was interrupted, so a resumed run sees the very batches an
uninterrupted one would, and each distributed worker reads its own shard.
"""
from __future__ import annotations

import fcntl
import sys
from typing import Callable, Iterator, List, Optional

import numpy as np
from mxnet.gluon.data import Dataset, Sampler

from .errors import DataError


class SeededTransformDataset(Dataset):
    """``dataset`` with a random ``transform(image, label, rng)`` seeded per (epoch, sample).

    Keys are ``epoch * len(dataset) + index``, as :class:`TrainBatchSampler` yields them.

    With ``bad_sample_log`` set, a sample that raises :class:`DataError` (an unreadable image, a
    label that does not fit) is replaced by the next readable one and its message is appended to
    that file once, however many loader processes and epochs meet it; without it the error
    propagates.
    """

    def __init__(self, dataset, transform: Callable, seed: int, bad_sample_log: Optional[str] = None):
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.bad_sample_log = bad_sample_log
        self._known_bad: set = set()  # per process: indices already found bad

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = divmod(int(key), len(self.dataset))
        for attempt in range(len(self.dataset)):
            candidate = (index + attempt) % len(self.dataset)
            if candidate in self._known_bad:
                continue
            try:
                image, label = self.dataset[candidate]
                return self.transform(image, label, np.random.default_rng([self.seed, epoch, candidate]))
            except DataError as err:
                if self.bad_sample_log is None:
                    raise
                self._known_bad.add(candidate)
                log_bad_sample(self.bad_sample_log, str(err))
        raise DataError(f"no readable sample left in the dataset (see {self.bad_sample_log})")


def log_bad_sample(path: str, message: str) -> None:
    """Append ``message`` to ``path`` unless a line already holds it; prints it when it is new."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # loader processes may meet the same file at once
        handle.seek(0)
        if message in (line.rstrip("\n") for line in handle):
            return
        handle.write(message + "\n")
        handle.flush()
    print(f"skipping a bad sample: {message}", file=sys.stderr, flush=True)


class TrainBatchSampler(Sampler):
    """Batches of keys for iterations ``start_iteration .. stop_iteration - 1``.

    Each epoch shuffles all samples with a generator seeded by ``(seed, epoch)``; worker
    ``shard`` of ``num_shards`` takes every ``num_shards``-th sample of that order. Incomplete
    batches at the end of an epoch are dropped, so every iteration has ``batch_size`` samples.
    """

    def __init__(self, length: int, batch_size: int, seed: int, start_iteration: int, stop_iteration: int,
                 shard: int = 0, num_shards: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start_iteration, self.stop_iteration = start_iteration, stop_iteration
        self.shard, self.num_shards = shard, num_shards
        self.iterations_per_epoch = iterations_per_epoch(length, batch_size, num_shards)
        if self.iterations_per_epoch == 0:
            raise ValueError(f"{length} samples over {num_shards} worker(s) cannot fill one batch of {batch_size}")

    def epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        return order[self.shard::self.num_shards]

    def __iter__(self) -> Iterator[List[int]]:
        cached_epoch, order = None, None
        for iteration in range(self.start_iteration, self.stop_iteration):
            epoch, batch = divmod(iteration, self.iterations_per_epoch)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self.epoch_order(epoch)
            picked = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            yield [int(epoch * self.length + index) for index in picked]

    def __len__(self):
        return max(0, self.stop_iteration - self.start_iteration)


def iterations_per_epoch(length: int, batch_size: int, num_shards: int = 1) -> int:
    """Full batches per epoch for one worker when ``length`` samples are split ``num_shards`` ways."""
    return (length // num_shards) // batch_size
