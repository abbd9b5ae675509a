"""Datasets, transforms and label I/O for semantic segmentation."""
from .base import SegmentationDataset
from .errors import DataError
from .folder import SegFolderDataset
from .image_io import read_image, write_image
from .palette import VOC_CLASSES, colorize, read_label, save_index_png, voc_palette
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize_image
from .voc import VOC_SPLITS, VOCSegDataset, compute_train_aug_ids

__all__ = ["DataError", "EvalTransform", "IMAGENET_MEAN", "IMAGENET_STD", "SegFolderDataset", "SegmentationDataset",
           "TrainTransform", "VOCSegDataset", "VOC_CLASSES", "VOC_SPLITS", "colorize", "compute_train_aug_ids",
           "normalize_image", "read_image", "read_label", "save_index_png", "voc_palette", "write_image"]
