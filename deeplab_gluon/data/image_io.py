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
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: Union[str, Path], image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode a (H, W, 3) uint8 RGB array to the format named by the file suffix (.jpg, .png, ...)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                            params)
    if not ok:
        raise DataError(f"cannot encode image as {path.suffix!r}: {path}")
    data.tofile(str(path))
