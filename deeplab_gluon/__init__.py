"""deeplab_gluon: DeepLabV3 semantic segmentation in MXNet Gluon, with ASPP or Vortex Pooling heads."""
import os

from . import cpu_threads

# MXNet's data-parallel CPU contexts share the same cores; keep its engine from oversubscribing them.
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
# Before anything imports mxnet: MXNet fixes its OpenMP thread count when it loads (see cpu_threads).
THREADS = cpu_threads.configure_mxnet_threads()

__version__ = "0.1.0"
