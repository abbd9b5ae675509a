"""Shared test fixtures and helpers."""
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_SAMPLE = REPO_ROOT.parent / "shared" / "voc_sample"


@pytest.fixture
def voc_sample_root():
    """The 13 real VOC 2012 val images beside the checkout; skip where absent."""
    if not (VOC_SAMPLE / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file():
        pytest.skip(f"{VOC_SAMPLE} is absent")
    return VOC_SAMPLE


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    mx.random.seed(0)
