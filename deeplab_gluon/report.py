"""HTML reports one opens from disk: one evaluation (``evaluate --report``), or several side by side (``compare``).

A report is a folder: ``index.html`` and the PNG / CSV / JSON files it shows, all linked by relative
names, with the style inline and no script or font fetched, so it opens from a file manager, a copied
folder or a CI artifact alike. Figures are drawn with matplotlib's Agg canvas (no display, no pyplot
state); the image panels are composed with numpy and OpenCV at exact pixel sizes.
"""
from __future__ import annotations

import heapq
import html
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from .data.palette import colorize, voc_palette

PANEL_SIDE = 320  # the longest side of each tile of a worst-image panel, in pixels
MAX_ENLARGEMENT = 4  # small images are enlarged by a whole factor up to this, so that their pixels stay visible
PANEL_GAP = 4  # white pixels between tiles
ERROR_COLOUR = (255, 0, 0)  # wrongly labelled pixels in the error tile
TOP_CONFUSIONS = 20
DPI = 100
# The evaluation JSON's layout. 2: a "format" field, "model", and "per_image" scores (ids, pixAcc, mIoU),
# which compare needs; JSON without "format" is the first layout.
EVALUATION_FORMAT = 2
SERIES_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .2em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.better { background: #e3f4e1; } td.worse { background: #fbe4e4; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; } .row > * { flex: 1 1 45%; min-width: 0; }
figure { margin: 0 0 1em 0; } figcaption { font-size: .9em; margin-top: .2em; }
.swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #555; vertical-align: middle; margin: 0 .2em 0 .5em; }
.note { color: #666; font-size: .9em; }
"""


# ------------------------------------------------------------------------------------------ HTML helpers

def escape(value) -> str:
    return html.escape(str(value), quote=True)


def percent(value: Optional[float]) -> str:
    """A fraction as a percentage with two decimals, as every number of the reports is shown; ``-`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}"


def html_table(headers: Optional[Sequence[str]], rows: Sequence[Sequence[str]], table_id: Optional[str] = None) -> str:
    """A table of already-escaped cells (no header row when ``headers`` is None); a cell given as
    ``(text, attributes)`` gets those attributes."""
    def cell(value, tag):
        if isinstance(value, tuple):
            return f"<{tag} {value[1]}>{value[0]}</{tag}>"
        return f"<{tag}>{value}</{tag}>"

    head = "" if headers is None else "<tr>" + "".join(cell(escape(h), "th") for h in headers) + "</tr>\n"
    body = "\n".join("<tr>" + "".join(cell(value, "td") for value in row) + "</tr>" for row in rows)
    identity = f' id="{table_id}"' if table_id else ""
    return f"<table{identity}>\n{head}{body}\n</table>"


def number_cell(value: Optional[float], key: str, extra_class: str = "") -> Tuple[str, str]:
    """A percentage cell that names what it shows (``data-key``): the tests read the page's numbers back by it."""
    classes = " ".join(part for part in ("num", extra_class) if part)
    return percent(value), f'class="{classes}" data-key="{escape(key)}"'



def write_page(folder: Path, title: str, body: str) -> Path:
    path = Path(folder) / "index.html"
    path.write_text(f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
    return path


def figure_of(width_inches: float, height_inches: float) -> Figure:
    figure = Figure(figsize=(width_inches, height_inches), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Save at the figure's own size (no tight bounding box), so a figure's pixel size is known in advance."""
    figure.savefig(str(path), format="png", dpi=DPI)
    return path


# ---------------------------------------------------------------------------------------------- figures

def bar_height(num_classes: int) -> float:
    return max(2.5, 0.22 * num_classes + 1.0)


def iou_bar_chart(names: Sequence[str], iou: Sequence[Optional[float]], path: Path, sorted_by_iou: bool,
                  title: str) -> Path:
    """Horizontal bars of per-class IoU in percent, in class order or highest first; a class without an IoU
    (absent from ground truth and prediction) has no bar and is marked ``absent``. 8 inches wide,
    ``bar_height(C)`` tall, at 100 dpi."""
    values = [float("nan") if v is None else float(v) for v in iou]
    order = list(range(len(names)))
    if sorted_by_iou:
        order.sort(key=lambda i: (math.isnan(values[i]), -values[i] if not math.isnan(values[i]) else 0, i))
    figure = figure_of(8, bar_height(len(names)))
    axes = figure.add_axes((0.25, 0.8 / figure.get_figheight(), 0.7, 1 - 1.3 / figure.get_figheight()))
    positions = np.arange(len(order))
    shown = [0.0 if math.isnan(values[i]) else 100 * values[i] for i in order]
    axes.barh(positions, shown, color="tab:blue")
    for position, i in zip(positions, order):
        label = "absent" if math.isnan(values[i]) else f"{100 * values[i]:.1f}"
        inside = shown[position] > 88  # a long bar carries its value inside, clear of the frame
        axes.text(shown[position] - 1 if inside else shown[position] + 1, position, label, va="center", fontsize=7,
                  ha="right" if inside else "left", color="white" if inside else "black")
    axes.set_yticks(positions)
    axes.set_yticklabels([names[i] for i in order], fontsize=8 if len(names) <= 40 else 6)
    axes.invert_yaxis()  # first class (or best) on top
    axes.set_xlim(0, 100)
    axes.set_xlabel("IoU %")
    axes.set_title(title, fontsize=10)
    return save_figure(figure, path)


def confusion_side(num_classes: int) -> float:
    return max(6.0, 0.14 * num_classes + 2.5)


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """(C, C) counts -> each row divided by its sum (the share of a ground-truth class's pixels given each
    label); NaN rows for classes absent from the ground truth."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    out = np.full(matrix.shape, np.nan)
    np.divide(matrix, rows, out=out, where=rows > 0)
    return out


def confusion_heatmap(matrix: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """The row-normalised confusion matrix as a heatmap (rows: ground truth, columns: prediction), square,
    ``confusion_side(C)`` inches at 100 dpi: about 14 pixels a class, so ADE20K's 150 stay legible when zoomed.
    Up to 25 classes the cells carry their percentages."""
    normalised = row_normalised(matrix)
    count = len(names)
    side = confusion_side(count)
    figure = figure_of(side, side)
    margin = 2.0 / side
    axes = figure.add_axes((margin, margin * 0.5, 1 - margin * 1.3, 1 - margin * 0.95))
    shown = np.ma.masked_invalid(normalised)
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    font = 8 if count <= 40 else 5
    axes.set_xticks(range(count))
    axes.set_yticks(range(count))
    axes.set_xticklabels(names, rotation=90, fontsize=font)
    axes.set_yticklabels(names, fontsize=font)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    if count <= 25:
        for row in range(count):
            for column in range(count):
                value = normalised[row, column]
                if not math.isnan(value) and value >= 0.005:
                    axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                              color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label="share of the ground-truth class's pixels")
    return save_figure(figure, path)


def top_confusions(matrix: np.ndarray, names: Sequence[str], count: int = TOP_CONFUSIONS) -> List[dict]:
    """The ``count`` largest off-diagonal shares of the row-normalised matrix, largest first:
    ``{"truth", "predicted", "share", "pixels"}``."""
    matrix = np.asarray(matrix)
    normalised = row_normalised(matrix)
    np.fill_diagonal(normalised, np.nan)
    flat = [(normalised[g, p], g, p) for g, p in zip(*np.nonzero(matrix)) if g != p]
    flat.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [{"truth": names[g], "predicted": names[p], "share": float(share), "pixels": int(matrix[g, p])}
            for share, g, p in flat[:count]]


def curves_from_log(records: List[dict]) -> Dict[str, list]:
    """``{"train": [(iteration, loss)], "val": [(iteration, mIoU)]}`` of a run log's records."""
    train = [(r["iteration"], r["loss"]) for r in records if r.get("type") == "train" and "loss" in r]
    val = [(r["iteration"], r["mIoU"]) for r in records if r.get("type") == "val" and r.get("mIoU") is not None]
    return {"train": train, "val": val}


def joined_curves(logs: Sequence[List[dict]]) -> Dict[str, list]:
    """The curves of runs that continue one another (a phase 2 initialised from phase 1, oldest first) on one
    iteration axis: each later run's iterations shifted by where the earlier ones ended. ``curves_from_log``'s
    keys plus ``"starts"``, the shifted iterations where the later runs begin."""
    joined: Dict[str, list] = {"train": [], "val": [], "starts": []}
    offset = 0
    for number, records in enumerate(logs):
        curves = curves_from_log(records)
        if number:
            joined["starts"].append(offset)
        for key in ("train", "val"):
            joined[key] += [(offset + iteration, value) for iteration, value in curves[key]]
        offset += max([iteration for key in ("train", "val") for iteration, _ in curves[key]], default=0)
    return joined


def overlaid_curves(curves: Dict[str, Dict[str, list]], path: Path) -> Path:
    """Training loss and validation mIoU against iteration, one colour per run (``{label: curves_from_log}`` or
    ``joined_curves``, whose ``starts`` are drawn as dotted lines); 11 x 4 inches."""
    figure = figure_of(11, 4)
    loss_axes = figure.add_subplot(1, 2, 1)
    val_axes = figure.add_subplot(1, 2, 2)
    for (label, runs), colour in zip(curves.items(), SERIES_COLOURS):
        if runs["train"]:
            loss_axes.plot(*zip(*runs["train"]), color=colour, label=label, linewidth=1)
        if runs["val"]:
            iterations, scores = zip(*runs["val"])
            val_axes.plot(iterations, [100 * s for s in scores], color=colour, marker="o", label=label)
        for start in runs.get("starts", ()):
            for axes in (loss_axes, val_axes):
                axes.axvline(start, color=colour, linestyle=":", linewidth=1)
    loss_axes.set(xlabel="iteration", ylabel="training loss", title="Training loss")
    val_axes.set(xlabel="iteration", ylabel="mIoU %", title="Validation mIoU", ylim=(0, 100))
    for axes in (loss_axes, val_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    if not any(runs["val"] for runs in curves.values()):
        val_axes.text(0.5, 0.5, "no validation during training\n(--val_every 0)", ha="center", va="center",
                      transform=val_axes.transAxes, color="gray")
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.2)
    return save_figure(figure, path)


def grouped_iou_bars(names: Sequence[str], series: Dict[str, Sequence[Optional[float]]], path: Path) -> Path:
    """Per-class IoU of several models as grouped vertical bars (class order), one colour per model;
    ``max(8, 0.35 * C * models + 2)`` inches wide, 4.5 tall."""
    count, models = len(names), len(series)
    figure = figure_of(max(8.0, 0.35 * count * models / 2 + 2), 4.5)
    axes = figure.add_axes((0.07, 0.3, 0.9, 0.62))
    width = 0.8 / models
    positions = np.arange(count)
    for number, ((label, values), colour) in enumerate(zip(series.items(), SERIES_COLOURS)):
        heights = [0.0 if v is None else 100 * v for v in values]
        axes.bar(positions - 0.4 + width * (number + 0.5), heights, width, label=label, color=colour)
    axes.set_xticks(positions)
    axes.set_xticklabels(names, rotation=90, fontsize=8 if count <= 40 else 5)
    axes.set_xlim(-0.6, count - 0.4)
    axes.set(ylabel="IoU %", ylim=(0, 100), title="Per-class IoU")
    axes.legend(fontsize=8, ncol=min(models, 3))
    return save_figure(figure, path)


def paired_figure(first: np.ndarray, second: np.ndarray, labels: Tuple[str, str], interval: dict, path: Path) -> Path:
    """Per-image mIoU of two models on the same images: a scatter (one point an image, the diagonal
    a tie) and the histogram of the differences with the bootstrap interval of their mean; 11 x 4 inches."""
    figure = figure_of(11, 4)
    scatter = figure.add_subplot(1, 2, 1)
    histogram = figure.add_subplot(1, 2, 2)
    scatter.scatter(100 * first, 100 * second, s=10, alpha=0.6)
    scatter.plot([0, 100], [0, 100], color="gray", linewidth=0.8)
    scatter.set(xlabel=f"{labels[0]}: image mIoU %", ylabel=f"{labels[1]}: image mIoU %", xlim=(0, 100),
                ylim=(0, 100), title="Per image (above the diagonal: the second is better)")
    difference = 100 * (second - first)
    histogram.hist(difference, bins=min(40, max(5, len(difference) // 3)), color="tab:gray")
    histogram.axvline(0, color="black", linewidth=0.8)
    histogram.axvline(100 * interval["mean"], color="tab:red", label="mean difference")
    histogram.axvspan(100 * interval["low"], 100 * interval["high"], color="tab:red", alpha=0.2, zorder=0,
                      label="bootstrap 95 % interval")
    histogram.set(xlabel=f"{labels[1]} - {labels[0]}: image mIoU points", ylabel="images",
                  title="Paired differences")
    histogram.legend(fontsize=8)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    return save_figure(figure, path)


# ------------------------------------------------------------------------------------------ image panels

@dataclass
class WorstImage:
    """One image of the worst-K list: its id and scores, and what its panel shows."""
    index: int
    image_id: str
    miou: float
    pixel_accuracy: float
    prediction: np.ndarray  # (H, W) class indices
    label: Optional[np.ndarray] = None  # (H, W) ground truth, read again when the panel is drawn if None
    image: Optional[np.ndarray] = None  # (H, W, 3) uint8 RGB, or None where there is no image (folder mode)


class WorstImages:
    """Keeps the ``count`` lowest-mIoU images met so far with their predictions, so that no prediction of
    the whole split is held; ties are broken towards the earlier image, as :meth:`PerImageScores.worst`."""

    def __init__(self, count: int):
        self.count = max(0, int(count))
        self._heap: List[Tuple[float, int, np.ndarray, Optional[np.ndarray]]] = []  # (-mIoU, -index, ...)

    def offer(self, index: int, miou: float, prediction: np.ndarray, label: Optional[np.ndarray] = None) -> None:
        if self.count == 0 or math.isnan(miou):
            return
        item = (-miou, -index, np.asarray(prediction).astype(np.uint8), label)
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:  # worse (lower mIoU, or as low and earlier) than the best kept
            heapq.heapreplace(self._heap, item)

    def kept(self) -> List[Tuple[int, float, np.ndarray, Optional[np.ndarray]]]:
        """``(index, mIoU, prediction, label)``, lowest mIoU first."""
        return [(-neg_index, -neg_miou, prediction, label)
                for neg_miou, neg_index, prediction, label in sorted(self._heap, reverse=True)]


def tile_size(height: int, width: int) -> Tuple[int, int]:
    """(height, width) of a panel tile: the image's, shrunk so the longer side is PANEL_SIDE when it is longer,
    else enlarged by the largest whole factor (up to MAX_ENLARGEMENT) that keeps it at most PANEL_SIDE."""
    longest = max(height, width)
    scale = PANEL_SIDE / longest if longest > PANEL_SIDE else max(1, min(MAX_ENLARGEMENT, PANEL_SIDE // longest))
    return max(1, round(height * scale)), max(1, round(width * scale))


def error_tile(base: np.ndarray, prediction: np.ndarray, label: np.ndarray, ignore_label: int) -> np.ndarray:
    """The picture dimmed to grey with wrongly labelled pixels in ERROR_COLOUR and ignored ones in VOC's void colour."""
    grey = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)
    tile = np.repeat((96 + grey // 3)[..., None], 3, axis=2).astype(np.uint8)
    wrong = (prediction != label) & (label != ignore_label)
    tile[wrong] = ERROR_COLOUR
    tile[label == ignore_label] = voc_palette()[255]
    return tile


def worst_panel(entry: WorstImage, palette: np.ndarray, ignore_label: int) -> np.ndarray:
    """image | ground truth | prediction | errors, side by side: (h, n * w + (n - 1) * PANEL_GAP, 3) uint8 RGB
    with (h, w) = ``tile_size`` of the image and n = 4 (3 without an image)."""
    label, prediction = np.asarray(entry.label), np.asarray(entry.prediction)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {label.shape} of {entry.image_id} differ")
    ground_truth = colorize(label, palette)
    base = entry.image if entry.image is not None else ground_truth
    tiles = ([entry.image] if entry.image is not None else []) + [
        ground_truth, colorize(prediction, palette), error_tile(base, prediction, label, ignore_label)]
    height, width = tile_size(*label.shape)
    resized = [cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA if number == 0 and entry.image
                          is not None else cv2.INTER_NEAREST) for number, tile in enumerate(tiles)]
    gap = np.full((height, PANEL_GAP, 3), 255, np.uint8)
    pieces = [piece for tile in resized for piece in (tile, gap)][:-1]
    return np.concatenate(pieces, axis=1)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path


def legend_html(classes: Sequence[str], palette: np.ndarray, indices) -> str:
    return "".join(f'<span class="swatch" style="background: rgb{tuple(int(c) for c in palette[i])}"></span>'
                   f"{escape(classes[i])}" for i in indices if i < len(classes))


# ---------------------------------------------------------------------------------- the evaluation report

def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def headline_rows(evaluation: dict) -> List[Tuple[str, str]]:
    """(label, escaped value) rows that say what was evaluated, from an evaluation JSON."""
    settings = evaluation.get("settings") or {}
    rows = [("model", evaluation.get("model")), ("checkpoint", evaluation.get("checkpoint")),
            ("iteration", evaluation.get("iteration")),
            ("predictions", evaluation.get("pred_dir")), ("ground truth", evaluation.get("gt_dir")),
            ("dataset", evaluation.get("dataset")), ("split", evaluation.get("split")),
            ("images", evaluation.get("num_images")),
            ("scales", ",".join(f"{s:g}" for s in settings["scales"]) if settings.get("scales") else None),
            ("flip", None if "flip" not in settings else "yes" if settings["flip"] else "no"),
            ("output stride", settings.get("output_stride")),
            ("precision", settings.get("precision"))]
    return [(label, escape(value)) for label, value in rows if value is not None]


SCORES = (("pixAcc", "pixel accuracy"), ("mIoU", "mIoU"), ("mAcc", "mean class accuracy"),
          ("fwIoU", "frequency-weighted IoU"))


def write_evaluation_report(folder, evaluation: dict, per_image, worst: Sequence[WorstImage], palette=None,
                            run_log: Optional[Path] = None, progress: bool = True) -> Path:
    """Write ``folder/index.html`` for one evaluation, with what it shows beside it; returns the page's path.

    ``evaluation`` is the evaluation JSON (``classes``, ``summary``, ``confusion_matrix``, headline fields);
    ``per_image`` the :class:`~deeplab_gluon.metrics.PerImageScores`; ``worst`` the panels to draw, lowest
    mIoU first; ``palette`` (256, 3) the label colours (VOC's by default); ``run_log`` a run's
    ``log.jsonl`` whose curves are shown when it exists.
    """
    from .runlog import plot_curves

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    palette = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    classes, summary = evaluation["classes"], evaluation["summary"]
    matrix = np.asarray(evaluation["confusion_matrix"], dtype=np.int64)
    ignore_label = int((evaluation.get("settings") or {}).get("ignore_label", 255))
    iou = [summary["IoU"][name] for name in classes]
    (folder / "evaluation.json").write_text(json.dumps(evaluation, indent=1) + "\n")
    per_image.write_csv(folder / "per_image.csv", classes)
    iou_bar_chart(classes, iou, folder / "iou_sorted.png", True, "Per-class IoU, best first")
    iou_bar_chart(classes, iou, folder / "iou_by_class.png", False, "Per-class IoU, in class order")
    confusion_heatmap(matrix, classes, folder / "confusion.png")

    what = evaluation.get("model") or evaluation.get("pred_dir") or "predictions"
    where = " ".join(str(part) for part in (evaluation.get("dataset"), evaluation.get("split")) if part)
    body = [f"<h1>Evaluation of {escape(what)}{' on ' + escape(where) if where else ''}</h1>"]
    body.append('<div class="row"><div>' + html_table(
        ["score", "%"], [(label, number_cell(summary.get(key), key)) for key, label in SCORES], "headline")
        + "</div><div>" + html_table(None, [(f"<b>{label}</b>", value) for label, value in headline_rows(evaluation)],
                                     "settings") + "</div></div>")
    body.append('<p class="note">Files: <a href="per_image.csv">per_image.csv</a> (every image\'s pixel accuracy, '
                'mIoU and pixels per class), <a href="evaluation.json">evaluation.json</a>.</p>')

    body.append("<h2>Per-class IoU</h2>")
    body.append('<div class="row"><a href="iou_sorted.png"><img src="iou_sorted.png" alt="per-class IoU, sorted">'
                '</a><a href="iou_by_class.png"><img src="iou_by_class.png" alt="per-class IoU, class order"></a></div>')
    pixels = matrix.sum(axis=1)
    rows = [(escape(name), number_cell(summary["IoU"][name], f"IoU:{name}"), f'{int(count):d}')
            for name, count in zip(classes, pixels)]
    body.append("<details><summary>table</summary>" + html_table(["class", "IoU %", "ground-truth pixels"], rows,
                                                                 "per-class") + "</details>")

    body.append("<h2>Confusion</h2>")
    confusions = top_confusions(matrix, classes)
    if confusions:
        items = "".join(f"<li><b>{escape(c['truth'])}</b> labelled <b>{escape(c['predicted'])}</b>: "
                        f"{percent(c['share'])} % of its pixels ({c['pixels']} px)</li>" for c in confusions)
        listed = (f"<p>The largest confusions (share of the ground-truth class's pixels):</p><ol id=\"confusions\">"
                  f"{items}</ol>")
    else:
        listed = "<p>No pixel was confused.</p>"
    body.append(f'<div class="row"><div>{listed}</div><div><a href="confusion.png"><img src="confusion.png" '
                'alt="row-normalised confusion matrix"></a><p class="note">Rows: ground truth, columns: prediction, '
                "each row divided by its pixels. Click for the full-size image.</p></div></div>")

    if worst:  # none with --report_worst 0
        body.append(f"<h2>The {len(worst)} worst images by per-image mIoU</h2>")
        body.append('<p class="note">Each row: ' + ("image, " if worst[0].image is not None else "")
                    + "ground truth, prediction, and the wrongly labelled pixels in red (ignored ones pale).</p>")
        (folder / "worst").mkdir(exist_ok=True)
        for stale in (folder / "worst").glob("[0-9][0-9][0-9]_*.png"):  # a previous report's panels
            stale.unlink()
    figures = []
    for rank, entry in enumerate(tqdm(worst, desc="report: worst images", unit="img", disable=not progress,
                                      leave=False), start=1):
        name = f"worst/{rank:03d}_{safe_name(entry.image_id)}.png"
        write_png(folder / name, worst_panel(entry, palette, ignore_label))
        present = sorted(set(np.unique(entry.label).tolist()) | set(np.unique(entry.prediction).tolist()))
        figures.append(f'<figure class="worst" data-id="{escape(entry.image_id)}" data-miou="{entry.miou:.6f}">'
                       f'<a href="{name}"><img src="{name}" alt="{escape(entry.image_id)}"></a><figcaption>#{rank} '
                       f'<b>{escape(entry.image_id)}</b>: mIoU {percent(entry.miou)} %, pixel accuracy '
                       f'{percent(entry.pixel_accuracy)} %. {legend_html(classes, palette, present)}</figcaption>'
                       f"</figure>")
    body += figures

    if run_log is not None and Path(run_log).is_file():
        plot_curves(run_log, folder / "curves.png")
        body.append(f"<h2>Training curves</h2><p class=\"note\">From {escape(run_log)}.</p>"
                    '<img src="curves.png" alt="training curves">')
    return write_page(folder, f"Evaluation: {what}", "\n".join(body))


# ---------------------------------------------------------------------------------- the comparison report

def paired_bootstrap(differences, resamples: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of paired per-image differences and its bootstrap percentile interval.

    ``differences`` (N,) one value per image (second model minus first). Images are resampled with
    replacement ``resamples`` times (numpy's generator seeded with ``seed``, so a report is reproducible).
    Returns ``{"mean", "low", "high", "images", "wins", "losses", "ties"}``.
    """
    differences = np.asarray(differences, dtype=np.float64)
    count = len(differences)
    if count == 0:
        raise ValueError("no image scored by both")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // count)  # bounded memory: ADE20K's 2000 images x 10000 resamples at once is 160 MB
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = differences[rng.integers(0, count, size=(stop - start, count))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(differences.mean()), "low": float(low), "high": float(high), "images": count,
            "wins": int((differences > 0).sum()), "losses": int((differences < 0).sum()),
            "ties": int((differences == 0).sum())}


def paired_verdict(first: str, second: str, interval: dict) -> str:
    mean, low, high = (100 * interval[key] for key in ("mean", "low", "high"))
    sign = "+" if mean >= 0 else ""
    if low > 0 or high < 0:
        better, worse = (second, first) if mean > 0 else (first, second)
        judged = f"the interval excludes 0: on these images {better} is really better than {worse}"
    else:
        judged = f"the interval contains 0: on {interval['images']} images this difference is not told from noise"
    return (f"{second} - {first}: {sign}{mean:.2f} mIoU points per image (95 % interval {low:+.2f} .. {high:+.2f}; "
            f"{interval['wins']} images better, {interval['losses']} worse, {interval['ties']} equal); {judged}")


@dataclass
class ComparedEvaluation:
    """One model of a comparison: its label, its evaluation JSON (format 2, with per-image scores), where that
    came from, and its training logs: those of the runs it was initialised from, oldest first, then its own."""
    label: str
    evaluation: dict
    source: Path
    run_logs: Sequence[Path] = ()


def paired_scores(first: dict, second: dict) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Per-image mIoU of two evaluations on the same images, aligned by image id: ``(first (N,), second (N,))``
    over the images both scored, or None when the two did not evaluate the same images (other ids, or
    another dataset or split)."""
    if (first.get("dataset"), first.get("split")) != (second.get("dataset"), second.get("split")):
        return None
    a, b = first["per_image"], second["per_image"]
    if sorted(a["ids"]) != sorted(b["ids"]):
        return None
    by_id = dict(zip(b["ids"], b["mIoU"]))
    pairs = [(score, by_id[image_id]) for image_id, score in zip(a["ids"], a["mIoU"])
             if score is not None and by_id[image_id] is not None]
    if not pairs:
        return None
    return tuple(np.array(column, dtype=np.float64) for column in zip(*pairs))


def write_comparison_report(folder, entries: Sequence[ComparedEvaluation], resamples: int = 10000, seed: int = 0,
                            progress: bool = True) -> Tuple[Path, List[str]]:
    """Write ``folder/index.html`` comparing several evaluations of models with the same classes: headline
    rows, overlaid training curves (runs with a log), per-class IoU with each model's difference to the first
    (table and grouped bars), and for each model that scored the same images as the first the paired
    per-image mIoU difference with its bootstrap interval (:func:`paired_bootstrap`). Returns the page's path
    and the head-to-head lines it shows, one per model after the first."""
    from .runlog import read_log

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = [entry.label for entry in entries]
    classes = entries[0].evaluation["classes"]
    steps = tqdm(total=2 + len(entries) - 1, desc="report: comparison", unit="figure", disable=not progress,
                 leave=False)
    body = [f"<h1>Comparison: {escape(', '.join(labels))}</h1>"]

    rows = []
    for entry in entries:
        evaluation, summary = entry.evaluation, entry.evaluation["summary"]
        rows.append([escape(entry.label), escape(evaluation.get("model") or "-"),
                     escape(entry.source),
                     escape(evaluation.get("iteration", "-")),
                     escape(" ".join(str(p) for p in (evaluation.get("dataset"), evaluation.get("split")) if p)),
                     escape(len(evaluation["per_image"]["ids"]))]
                    + [number_cell(summary.get(key), f"{entry.label}:{key}") for key, _ in SCORES])
    body.append(html_table(["model", "network", "evaluation", "iteration", "data", "images"]
                           + [label for _, label in SCORES], rows, "headline"))

    curves = {entry.label: joined_curves([read_log(log) for log in entry.run_logs])
              for entry in entries if entry.run_logs}
    if curves:
        overlaid_curves(curves, folder / "curves.png")
        body.append('<h2>Training curves</h2><img src="curves.png" alt="training loss and validation mIoU">')
        if any(runs["starts"] for runs in curves.values()):
            body.append('<p class="note">A run initialised from another (<code>--init_from</code>, as phase 2 from '
                        "phase 1) follows that run's curves; the dotted line marks where it starts.</p>")
        missing = [label for label in labels if label not in curves]
        if missing:
            body.append(f'<p class="note">No run log for {escape(", ".join(missing))}.</p>')
    steps.update()

    body.append("<h2>Per-class IoU</h2>")
    series = {entry.label: [entry.evaluation["summary"]["IoU"][name] for name in classes] for entry in entries}
    grouped_iou_bars(classes, series, folder / "iou_grouped.png")
    steps.update()
    body.append('<a href="iou_grouped.png"><img src="iou_grouped.png" alt="per-class IoU of each model"></a>')
    def difference_cell(label: str, name: str, value, reference) -> Tuple[str, str]:
        key = f'data-key="diff:{escape(label)}:{escape(name)}"'
        if value is None or reference is None:
            return "-", f'class="num" {key}'
        difference = value - reference
        kind = " better" if difference > 0 else " worse" if difference < 0 else ""
        return f"{100 * difference:+.2f}", f'class="num{kind}" {key}'

    lines = [(name, [series[label][number] for label in labels]) for number, name in enumerate(classes)]
    lines.append(("mIoU", [entry.evaluation["summary"]["mIoU"] for entry in entries]))
    table_rows = [[escape(name)] + [number_cell(value, f"IoU:{label}:{name}") for label, value in zip(labels, values)]
                  + [difference_cell(label, name, value, values[0]) for label, value in zip(labels[1:], values[1:])]
                  for name, values in lines]
    headers = ["class"] + [f"{label} IoU %" for label in labels] + [f"{label} - {labels[0]}" for label in labels[1:]]
    body.append(html_table(headers, table_rows, "per-class"))

    body.append("<h2>Head to head on the same images</h2>")
    first, verdicts = entries[0], []
    for number, entry in enumerate(entries[1:], start=1):
        pair = paired_scores(first.evaluation, entry.evaluation)
        if pair is None:
            verdicts.append(f"{entry.label} and {first.label} were not evaluated on the same images: "
                            "no paired comparison")
            body.append(f"<p>{escape(verdicts[-1])}.</p>")
        else:
            interval = paired_bootstrap(pair[1] - pair[0], resamples, seed)
            verdicts.append(paired_verdict(first.label, entry.label, interval))
            name = f"paired_{number}.png"
            paired_figure(pair[0], pair[1], (first.label, entry.label), interval, folder / name)
            body.append(f'<p class="paired" data-label="{escape(entry.label)}" data-mean="{interval["mean"]:.6f}" '
                        f'data-low="{interval["low"]:.6f}" data-high="{interval["high"]:.6f}">'
                        f"{escape(verdicts[-1])}.</p>"
                        f'<img src="{name}" alt="paired per-image mIoU">')
        steps.update()
    body.append(f'<p class="note">Paired difference: the mean over images of (image mIoU of the second - of the '
                f"first), each image's mIoU over the classes in its ground truth or prediction; the interval is "
                f"the 2.5th to 97.5th percentile of that mean over {resamples} bootstrap resamples of the images "
                f"(seed {seed}).</p>")
    steps.close()
    return write_page(folder, f"Comparison: {', '.join(labels)}", "\n".join(body)), verdicts
