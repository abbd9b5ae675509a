"""Decoding photographs to RGB arrays with OpenCV."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import DataError


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Decode an image file to a (H, W, 3) uint8 RGB array (OpenCV decodes BGR; we swap)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    # imdecode from bytes, so that non-ASCII paths work and a broken file is reported, not None.
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"cannot decode image {path}: the file is empty")
    if _is_truncated_jpeg(data):
        # libjpeg decodes a cut-off JPEG anyway, filling the missing part with grey, and only warns
        raise DataError(f"cannot decode image {path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _is_truncated_jpeg(data: np.ndarray) -> bool:
    """A JPEG whose last kilobyte holds no end-of-image marker (FF D9) was cut short.

    Entropy-coded JPEG data escapes every FF byte, so FF D9 occurs only as the real marker; the
    kilobyte of slack allows for the padding some writers append after it.
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    tail = data[-1024:]
    return not np.any((tail[:-1] == 0xFF) & (tail[1:] == 0xD9))


def write_image(path: Union[str, Path], image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode a (H, W, 3) uint8 RGB array to the format named by the file suffix (.jpg, .png, ...)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"cannot encode image as {path.suffix!r}: {path}")
    data.tofile(str(path))
