"""Datasets, transforms and label I/O for semantic segmentation."""
from .errors import DataError
from .image_io import read_image, write_image
from .palette import VOC_CLASSES, colorize, read_label, save_index_png, voc_palette

__all__ = ["DataError", "VOC_CLASSES", "colorize", "read_image", "read_label", "save_index_png", "voc_palette",
           "write_image"]
