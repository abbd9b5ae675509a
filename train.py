#!/usr/bin/env python
"""Train DeepLabV3 (ASPP or Vortex Pooling). See ``python train.py --help`` and the README."""
import sys

from deeplab_gluon.train import main

if __name__ == "__main__":
    sys.exit(main())
