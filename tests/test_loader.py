"""Reproducible batches: order from (seed, epoch), augmentation from (seed, epoch, index), shards."""
import numpy as np
import pytest
from mxnet import gluon

from deeplab_gluon.data.loader import SeededTransformDataset, TrainBatchSampler, iterations_per_epoch


def test_batches_cover_each_epoch_once_and_reshuffle():
    sampler = TrainBatchSampler(length=10, batch_size=3, seed=7, start_iteration=0, stop_iteration=6)
    batches = list(sampler)
    assert len(sampler) == 6 and all(len(batch) == 3 for batch in batches)
    epoch0 = [key for batch in batches[:3] for key in batch]
    epoch1 = [key - 10 for batch in batches[3:] for key in batch]   # keys are epoch * length + index
    assert len(set(epoch0)) == 9 and len(set(epoch1)) == 9          # one sample dropped per epoch
    assert set(epoch0) <= set(range(10)) and set(epoch1) <= set(range(10))
    assert epoch0 != epoch1


def test_a_resumed_sampler_continues_the_same_sequence():
    whole = list(TrainBatchSampler(25, 4, seed=3, start_iteration=0, stop_iteration=20))
    resumed = list(TrainBatchSampler(25, 4, seed=3, start_iteration=13, stop_iteration=20))
    assert resumed == whole[13:]


def test_shards_split_the_epoch_between_workers():
    shards = [list(TrainBatchSampler(20, 2, seed=1, start_iteration=0, stop_iteration=5, shard=k, num_shards=2))
              for k in range(2)]
    first = {key for batch in shards[0] for key in batch}
    second = {key for batch in shards[1] for key in batch}
    assert first.isdisjoint(second) and first | second == set(range(20))
    assert iterations_per_epoch(20, 2, num_shards=2) == 5


def test_too_few_samples_for_a_batch_is_refused():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        TrainBatchSampler(3, 4, 0, 0, 1)


class _Numbers:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.full((2, 2), index, np.float32), np.zeros((2, 2), np.float32)


def _noisy(image, label, rng):
    return image + rng.uniform(size=image.shape).astype(np.float32), label


def test_augmentation_depends_on_seed_epoch_and_index_only():
    dataset = SeededTransformDataset(_Numbers(), _noisy, seed=11)
    again = SeededTransformDataset(_Numbers(), _noisy, seed=11)
    np.testing.assert_array_equal(dataset[4 * 2 + 1][0], again[4 * 2 + 1][0])       # same key, same sample
    assert not np.array_equal(dataset[1][0], dataset[4 + 1][0])                      # next epoch differs
    assert np.floor(dataset[4 * 3 + 2][0]).max() == 2                                # key maps to index 2
    sampler = TrainBatchSampler(4, 2, seed=11, start_iteration=0, stop_iteration=4)
    single = [b[0].asnumpy() for b in gluon.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0)]
    workers = [b[0].asnumpy() for b in gluon.data.DataLoader(dataset, batch_sampler=sampler, num_workers=2)]
    for a, b in zip(single, workers):
        np.testing.assert_array_equal(a, b)
