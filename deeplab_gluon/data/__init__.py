"""Datasets (VOC + SBD, image/label folders, Cityscapes, ADE20K, synthetic toy shapes), transforms and label I/O.

Every dataset yields ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)`` without a transform and
``transform(image, label)`` with one; see ``base.SegmentationDataset`` for the full contract.
"""
from __future__ import annotations

from .ade20k import ADE20K_CLASSES, ADE20K_COLOURS, ADE20KDataset
from .base import SegmentationDataset
from .cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLOURS, CityscapesDataset
from .class_list import read_class_list
from .errors import DataError
from .folder import SegFolderDataset
from .image_io import read_image, write_image
from .palette import VOC_CLASSES, colorize, full_palette, read_label, save_index_png, voc_palette
from .registry import (DATASETS, NAMED_CLASSES, NAMED_COLOURS, TRAIN_SPLITS, checkpoint_palette, dataset_classes,
                       default_train_split, get_dataset, palette_colours)
from .splits import ALL_IMAGES, NO_SPLIT, is_all_images, wants_split
from .toy import TOY_CLASSES, make_toy_dataset, render_toy_scene
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize_image
from .voc import VOC_SPLITS, VOCSegDataset, compute_train_aug_ids

__all__ = ["ADE20KDataset", "ADE20K_CLASSES", "ADE20K_COLOURS", "ALL_IMAGES", "default_train_split", "CITYSCAPES_CLASSES",
           "CITYSCAPES_COLOURS", "CityscapesDataset", "DATASETS", "DataError", "EvalTransform", "IMAGENET_MEAN",
           "IMAGENET_STD", "NAMED_CLASSES", "NAMED_COLOURS", "NO_SPLIT", "SegFolderDataset", "SegmentationDataset",
           "TOY_CLASSES", "TRAIN_SPLITS", "dataset_classes", "TrainTransform", "VOCSegDataset", "VOC_CLASSES", "VOC_SPLITS", "checkpoint_palette",
           "colorize", "compute_train_aug_ids", "full_palette", "get_dataset", "is_all_images", "make_toy_dataset",
           "normalize_image", "palette_colours", "read_class_list", "read_image", "read_label", "render_toy_scene",
           "save_index_png", "voc_palette", "wants_split", "write_image"]
