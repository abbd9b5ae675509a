#!/usr/bin/env python
"""Build VOCdevkit_aug/ (VOC 2012 + SBD) and its train_aug split (10,582 images) from local files.

    # from the two downloaded archives (or their extracted folders)
    python scripts/prepare_voc.py --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out VOCdevkit_aug
    # or fetch them first (about 2 GB + 1.4 GB) into --download_dir
    python scripts/prepare_voc.py --download --out VOCdevkit_aug
"""
import argparse
import sys
from pathlib import Path

from deeplab_gluon.cli import FAILURE, USAGE, output_problem
from deeplab_gluon.data import DataError
from deeplab_gluon.data.prepare_voc import (EXPECTED_COUNTS, SBD_ARCHIVE, SBD_URL, VOC_ARCHIVE, VOC_URL, download,
                                            prepare_voc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("VOCdevkit_aug"), help="default: %(default)s")
    parser.add_argument("--voc", type=Path, help=f"{VOC_ARCHIVE} or its extracted VOCdevkit/ or VOC2012/ folder")
    parser.add_argument("--sbd", type=Path, help=f"SBD {SBD_ARCHIVE} or its extracted benchmark_RELEASE/ folder")
    parser.add_argument("--download", action="store_true",
                        help="fetch the archives not given with --voc/--sbd from the official URLs")
    parser.add_argument("--download_dir", type=Path, default=Path("downloads"), help="default: %(default)s")
    args = parser.parse_args(argv)
    problem = output_problem(args.out, "--out", folder=True) if str(args.out).strip() else "--out cannot be empty"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return USAGE
    try:
        if args.download:
            args.voc = args.voc or download(VOC_URL, args.download_dir / VOC_ARCHIVE)
            args.sbd = args.sbd or download(SBD_URL, args.download_dir / SBD_ARCHIVE)
        counts = prepare_voc(args.out, args.voc, args.sbd)
    except DataError as error:  # a source that is missing or is not what it should be
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    except OSError as error:  # the work failed (a full disk, ...)
        print(f"error: {error}", file=sys.stderr)
        return FAILURE
    for name, count in counts.items():
        note = "" if count == EXPECTED_COUNTS[name] else f"  (official archives: {EXPECTED_COUNTS[name]})"
        print(f"{name:<10} {count:6d}{note}")
    if "train_aug" not in counts:
        print("no SBD given: train_aug is not available (pass --sbd benchmark.tgz)")
    print(f"ready: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
