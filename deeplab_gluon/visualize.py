"""Pictures of predictions: a colour mask blended on the image, and image | prediction | ground truth panels.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot), so nothing depends on a display,
on the global backend, or on closing figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .data.palette import colorize, voc_palette

PANEL_INCHES = 4.0  # the longer side of each panel
LEGEND_INCHES = 0.3  # per legend row
PANEL_GAP = 0.01  # between panels, as a fraction of the figure width


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, palette: Optional[np.ndarray] = None,
            keep_class: Optional[int] = None) -> np.ndarray:
    """Blend the class colours on the image.

    ``image`` (H, W, 3) uint8 RGB, ``labels`` (H, W) class indices -> (H, W, 3) uint8 RGB equal to
    ``(1 - alpha) * image + alpha * colour`` (``cv2.addWeighted``). Pixels of ``keep_class`` (e.g. 0 when
    it is the background, whose VOC colour is black) keep the image as it is.
    """
    image = np.asarray(image, dtype=np.uint8)
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be (H, W, 3) and (H, W)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    blended = cv2.addWeighted(image, 1.0 - alpha, colorize(labels, palette), alpha, 0.0)
    if keep_class is not None:
        keep = labels == keep_class
        blended[keep] = image[keep]
    return blended


def _class_name(index: int, classes: Optional[Sequence[str]], ignore_label: int) -> str:
    if index == ignore_label:
        return "ignored"
    if classes is not None and index < len(classes):
        return str(classes[index])
    return f"class {index}"


def side_by_side(image: np.ndarray, prediction: np.ndarray, ground_truth: Optional[np.ndarray] = None,
                 classes: Optional[Sequence[str]] = None, path: Union[str, Path, None] = None,
                 ignore_label: int = 255, palette: Optional[np.ndarray] = None, dpi: int = 100) -> Figure:
    """Draw image | prediction | ground truth (when given) in one row, with a legend of the classes present.

    ``image`` (H, W, 3) uint8 RGB; ``prediction`` and ``ground_truth`` (H, W) class indices, coloured with
    the VOC palette (``ignore_label`` pixels of the ground truth in the VOC void colour). ``classes`` names
    the legend entries. Returns the figure (axes in panel order, titled ``image``, ``prediction``,
    ``ground truth``); with ``path`` it is also saved there as PNG.
    """
    image = np.asarray(image, dtype=np.uint8)
    panels = [("image", image), ("prediction", colorize(prediction, palette))]
    shown = [np.asarray(prediction)]
    if ground_truth is not None:
        panels.append(("ground truth", colorize(ground_truth, palette)))
        shown.append(np.asarray(ground_truth))
    for title, picture in panels[1:]:
        if picture.shape[:2] != image.shape[:2]:
            raise ValueError(f"{title} is {picture.shape[1]}x{picture.shape[0]} but the image is "
                             f"{image.shape[1]}x{image.shape[0]}")
    present = sorted({int(value) for s in shown for value in np.unique(s)})
    colours = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    handles = [Patch(facecolor=colours[index] / 255.0, edgecolor="black", linewidth=0.5,
                     label=_class_name(index, classes, ignore_label)) for index in present]

    height, width = image.shape[:2]
    scale = PANEL_INCHES / max(height, width)
    columns = min(len(handles), 6) or 1
    legend_rows = -(-len(handles) // columns)
    panel_w, panel_h = width * scale, height * scale
    figure = Figure(figsize=(panel_w * len(panels), panel_h + 0.4 + LEGEND_INCHES * legend_rows), dpi=dpi)
    FigureCanvasAgg(figure)
    total_h = figure.get_figheight()
    bottom = LEGEND_INCHES * legend_rows / total_h
    for number, (title, picture) in enumerate(panels):
        left = number / len(panels) + PANEL_GAP / 2
        axes = figure.add_axes((left, bottom, 1.0 / len(panels) - PANEL_GAP, panel_h / total_h))
        axes.imshow(picture, interpolation="nearest")  # nearest: the palette colours stay exact
        axes.set_title(title, fontsize=10)
        axes.set_axis_off()
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=columns, frameon=False, fontsize=8,
                      bbox_to_anchor=(0.5, 0.0))
    if path is not None:
        figure.savefig(str(path), format="png", dpi=dpi)
    return figure
