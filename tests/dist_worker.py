"""One process of the distributed-training test (run by tests/test_distributed.py, not by pytest).

    python tests/dist_worker.py TOY_ROOT OUT_DIR STEPS BATCH_SIZE dist|single

``dist``: a worker of a running dist_sync job (DMLC_* in the environment) reading its shard;
``single``: one process reading every shard. Each takes STEPS SGD steps with frozen BatchNorm and no
dropout (so the computation does not depend on how the batch is split) and saves its weights to
OUT_DIR/rank<r>.params.
"""
import sys
from pathlib import Path

import mxnet as mx
from mxnet import gluon

from deeplab_gluon.data import TrainTransform, get_dataset
from deeplab_gluon.data.loader import SeededTransformDataset, TrainBatchSampler
from deeplab_gluon.models import get_deeplab
from deeplab_gluon.trainer import SegmentationTrainer


def main(toy_root, out_dir, steps, batch_size, mode):
    kvstore = mx.kv.create("dist_sync") if mode == "dist" else "device"
    rank, num_workers = (kvstore.rank, kvstore.num_workers) if mode == "dist" else (0, 1)
    dataset = get_dataset("toy", toy_root, "train")
    seeded = SeededTransformDataset(dataset, TrainTransform(crop_size=32), seed=0)
    sampler = TrainBatchSampler(len(dataset), int(batch_size), seed=0, start_iteration=0,
                                stop_iteration=int(steps), shard=rank, num_shards=num_workers)
    mx.random.seed(rank + 100)  # different initial weights per worker: the kvstore must make them equal
    net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=dataset.num_classes, freeze_bn=True, dropout=0.0)
    if mode == "single":
        mx.random.seed(100)
        net = get_deeplab("resnet18_v2", "aspp", 16, num_classes=dataset.num_classes, freeze_bn=True, dropout=0.0)
    trainer = SegmentationTrainer(net, [mx.cpu()], learning_rate=1e-4, kvstore=kvstore)
    for images, labels in gluon.data.DataLoader(seeded, batch_sampler=sampler):
        trainer.train_step(images, labels, 1e-4)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(Path(out_dir) / f"rank{rank}.params"))
    print(f"worker {rank}/{num_workers} done after {trainer.iteration} steps", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
