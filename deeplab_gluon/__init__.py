"""deeplab_gluon: DeepLabV3 semantic segmentation in MXNet Gluon, with ASPP or Vortex Pooling heads.

    from deeplab_gluon import get_model, load_model, predict_labels
    net = get_model("deeplabv3_resnet101_v2_aspp", num_classes=21)     # a new network
    net = load_model("runs/voc/phase2")                                 # a trained one (file or run folder)
"""
import os

from . import cpu_threads

# MXNet's data-parallel CPU contexts share the same cores; keep its engine from oversubscribing them.
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
# Before anything imports mxnet: MXNet fixes its OpenMP thread count when it loads (see cpu_threads).
THREADS = cpu_threads.configure_mxnet_threads()

__version__ = "0.1.0"

# name -> module; imported on first use, so that `import deeplab_gluon` stays light and the
# environment above is set before MXNet loads
_API = {"ModelSpec": "models", "build_model": "models", "get_deeplab": "models", "get_model": "models",
        "list_models": "models", "Checkpoint": "checkpoint", "load_model": "precision",
        "ConfusionMatrix": "metrics", "predict_labels": "inference", "predict_probs": "inference"}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'deeplab_gluon' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_API[name]}", __name__), name)
