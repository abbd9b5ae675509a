"""The table ``sh_train.sh`` ends the VOC recipe with: each evaluation it ran beside the DeepLabV3 paper's figure
for the same protocol (Chen et al. 2017, Table 4/5: ResNet-101, Multi-Grid (1, 2, 4), ASPP + image pooling,
trained on train_aug at output stride 16, scored on VOC 2012 val).

    python scripts/paper_table.py runs/voc_aspp/eval
    python scripts/paper_table.py runs/voc_aspp/eval --markdown

reads the evaluation JSON files ``phase1_os16.json``, ``phase1_os8.json``, ``phase1_os8_msflip.json`` and
``phase2_os8.json`` of that folder (those present) and prints one row each: pixel accuracy, mIoU, the paper's
mIoU for that protocol, and the JSON file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (file stem, what was scored, the paper's val mIoU % for that protocol or None)
ROWS = (
    ("phase1_os16", "phase 1 (train_aug, OS16), eval OS16, single scale", 77.21),
    ("phase1_os8", "phase 1, eval OS8, single scale", 78.51),
    ("phase1_os8_msflip", "phase 1, eval OS8, scales 0.5-1.75 + flip", 79.77),
    ("phase2_os8", "phase 2 (BatchNorm frozen, OS8), eval OS8, single scale", None),
)


def table_rows(folder: Path):
    """``(what, pixAcc %, mIoU %, paper mIoU % or None, json path)`` for each evaluation file present."""
    rows = []
    for stem, what, paper in ROWS:
        path = Path(folder) / f"{stem}.json"
        if not path.is_file():
            continue
        try:
            summary = json.loads(path.read_text())["summary"]
            pix_acc, miou = 100 * summary["pixAcc"], 100 * summary["mIoU"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"paper_table.py: error: {path}: not an evaluation JSON ({err})") from None
        rows.append((what, pix_acc, miou, paper, path))
    return rows


def format_table(rows, markdown: bool = False) -> str:
    header = ("evaluation", "pixAcc %", "mIoU %", "paper mIoU %", "JSON")
    cells = [(what, f"{pix:.2f}", f"{miou:.2f}", "-" if paper is None else f"{paper:.2f}", str(path))
             for what, pix, miou, paper, path in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(row[i]) for row in [header] + cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header] + cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="paper_table.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the recipe's eval/ folder")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    rows = table_rows(args.folder)
    if not rows:
        print(f"paper_table.py: error: no evaluation JSON ({', '.join(s + '.json' for s, _, _ in ROWS)}) in "
              f"{args.folder}", file=sys.stderr)
        return 2
    print(format_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
