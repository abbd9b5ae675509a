#!/usr/bin/env python
"""Write the synthetic toy-shapes dataset (VOC layout) that `make demo` trains on.

    python scripts/make_toy_data.py --out data/toy --num_train 400 --num_val 50 --size 96 --seed 0

Read it back with get_dataset("toy", "data/toy", "train") or VOCSegDataset(root, split, classes=TOY_CLASSES).
"""
import argparse
import sys
import time

from deeplab_gluon.cli import FAILURE, USAGE, output_problem
from deeplab_gluon.data import DataError
from deeplab_gluon.data.toy import DEFAULT_IMAGE_SIZE, DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, TOY_CLASSES, make_toy_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root; VOC2012/ is written inside it")
    parser.add_argument("--num_train", type=int, default=DEFAULT_NUM_TRAIN)
    parser.add_argument("--num_val", type=int, default=DEFAULT_NUM_VAL)
    parser.add_argument("--size", type=int, nargs="+", default=list(DEFAULT_IMAGE_SIZE),
                        help="image side, or height width (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape_only", action="store_true",
                        help="colour objects independently of their class, so that only the shape tells the "
                             "classes apart (much harder to learn from scratch)")
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error("--size takes one value or two (height width)")
    size = tuple(args.size * 2 if len(args.size) == 1 else args.size)
    problem = output_problem(args.out, "--out", folder=True) if args.out.strip() else "--out cannot be empty"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return USAGE
    try:
        start = time.perf_counter()
        voc2012 = make_toy_dataset(args.out, args.num_train, args.num_val, size, args.seed, progress=True,
                                   colour_cue=not args.shape_only)
        seconds = time.perf_counter() - start
    except (DataError, ValueError) as error:  # values it cannot make a dataset of
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    except OSError as error:  # the writing failed (a full disk, ...)
        print(f"error: {error}", file=sys.stderr)
        return FAILURE
    total = args.num_train + args.num_val
    print(f"wrote {args.num_train} train + {args.num_val} val scenes of {size[0]}x{size[1]} to {voc2012} "
          f"in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} images/s); classes: {', '.join(TOY_CLASSES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
