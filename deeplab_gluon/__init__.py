"""deeplab_gluon: DeepLabV3 semantic segmentation in MXNet Gluon, with ASPP or Vortex Pooling heads."""
import os

# MXNet's data-parallel CPU contexts share the same cores; keep its engine from oversubscribing them.
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

__version__ = "0.1.0"
