"""PASCAL VOC class names and colour map, palettes from class colours; reading and writing label PNGs as
class indices."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
# PIL only for palette PNGs: OpenCV expands a palette to RGB and loses the class indices.
from PIL import Image, UnidentifiedImageError

from .errors import DataError

PathLike = Union[str, Path]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def voc_palette() -> np.ndarray:
    """The standard 256-entry VOC colour map, (256, 3) uint8 RGB.

    The bits of the class index are interleaved into the high bits of R, G and B
    (bit 0 -> R, bit 1 -> G, bit 2 -> B, the next three bits one position lower, ...),
    which is how the VOC devkit's ``labelcolormap`` builds it: 0 -> black, 1 -> (128, 0, 0),
    255 (void) -> (224, 224, 192).
    """
    index = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for shift in range(8):  # 8 bit positions, vectorised over the 256 indices
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def full_palette(class_colours: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """A (256, 3) uint8 RGB palette: ``class_colours`` (C, 3) for indices ``0..C-1``, the VOC colours
    for the rest, so that indices past the classes stay distinct and 255 (void) keeps VOC's
    (224, 224, 192). Without ``class_colours`` it is the VOC palette."""
    palette = voc_palette()
    if class_colours is not None and len(class_colours):
        colours = np.asarray(class_colours, dtype=np.int64).reshape(-1, 3)
        if len(colours) > 256 or colours.min() < 0 or colours.max() > 255:
            raise ValueError(f"class colours must be at most 256 RGB triples of 0..255, got shape "
                             f"{colours.shape} with values {colours.min()}..{colours.max()}")
        palette[:len(colours)] = colours
    return palette


def colorize(mask: np.ndarray, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """Class-index mask (H, W) of values 0-255 -> (H, W, 3) uint8 RGB image through the palette."""
    mask = np.asarray(mask)
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255 to be coloured, got {mask.min()}..{mask.max()}")
    palette = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return palette[mask.astype(np.int64)]


def save_index_png(path: PathLike, mask: np.ndarray, palette: Optional[np.ndarray] = None) -> None:
    """Write a (H, W) class-index mask as a palette PNG: pixel values are the indices, the palette only
    colours them (VOC colours by default), like VOC's ``SegmentationClass`` files."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a label mask must be (H, W), got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255 for a palette PNG, got {mask.min()}..{mask.max()}")
    palette = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    image.save(str(path), format="PNG")


def _rgb_to_indices(rgb: np.ndarray, path: PathLike) -> np.ndarray:
    """Map an RGB label image whose colours are all VOC palette colours back to class indices."""
    palette = voc_palette().astype(np.int64)
    palette_codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]  # all 256 are distinct
    rgb = rgb.astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(codes, return_inverse=True)
    order = np.argsort(palette_codes)
    position = np.searchsorted(palette_codes, colours, sorter=order).clip(0, 255)
    matched = palette_codes[order[position]] == colours
    if not matched.all():
        strange = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in colours[~matched][:5]]
        raise DataError(f"{path}: RGB label with colours outside the VOC palette, e.g. {strange}; "
                        "save labels as palette or greyscale PNGs of class indices")
    return order[position][inverse].reshape(codes.shape).astype(np.uint8)


def read_label(path: PathLike) -> np.ndarray:
    """Read a label image as a (H, W) uint8 array of class indices.

    - palette PNG (VOC ``SegmentationClass``): the palette indices, never the colours;
    - greyscale PNG (``SegmentationClassAug``, CamVid-style): the grey values;
    - RGB(A) image whose colours all belong to the VOC palette: mapped back to indices;
    - anything else: ``DataError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
            if mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale PNGs of small indices
                values = np.array(image)
                if values.size and (values.min() < 0 or values.max() > 255):
                    raise DataError(f"{path}: 16-bit label with values {values.min()}..{values.max()} "
                                    "outside 0..255")
                return values.astype(np.uint8)
            if mode in ("RGB", "RGBA"):
                return _rgb_to_indices(np.array(image.convert("RGB")), path)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read label image {path}: {error}") from None
    raise DataError(f"{path}: unsupported label image mode {mode!r}; expected a palette or greyscale PNG")
