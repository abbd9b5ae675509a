"""Record a finished training run as one JSON under ``benchmarks/results/`` (the recipe ablation's rows).

    python benchmarks/record_run.py runs/camvid/phase1 --name camvid_final_seed0 \
        --change "the recipe as shipped" --command "./sh_train.sh --recipe camvid ..." [--note "..."]

reads the run folder's ``config.json``, ``log.jsonl`` and ``summary.json`` and writes
``benchmarks/results/recipes/<name>.json``: the change it tests, the command, the flags, every validation
(iteration, pixAcc, mIoU, per-class IoU), the iterations, the wall minutes from the log's first to its last
line (training and validation), the threads, the machine, and the note (e.g. what else ran beside it).
Prints the row it adds to the ablation table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results" / "recipes"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_record(run_dir: Path) -> dict:
    """What a run folder says about its run: flags, validations, length, wall time."""
    run_dir = Path(run_dir)
    entries = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    validations = [{"iteration": entry["iteration"], "pixAcc": entry["pixAcc"], "mIoU": entry["mIoU"],
                    "per_class_IoU": entry.get("per_class_IoU") or entry.get("IoU")}
                   for entry in entries if entry["type"] == "val"]
    starts = [entry for entry in entries if entry["type"] == "start"]
    speeds = [entry["images_per_sec"] for entry in entries if entry["type"] == "train" and "images_per_sec" in entry]
    return {
        "config": config, "validations": validations, "iterations": summary["iteration"],
        "final_val_mIoU": validations[-1]["mIoU"] if validations else None,
        "wall_minutes": round((entries[-1]["time"] - entries[0]["time"]) / 60, 2),
        "segments": len(starts), "median_images_per_sec": sorted(speeds)[len(speeds) // 2] if speeds else None,
        "cpu_threads": config.get("cpu_threads"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="record_run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True, help="file name (no .json) under benchmarks/results/recipes/")
    parser.add_argument("--change", required=True, help="what this run changes against the row it is compared with")
    parser.add_argument("--command", required=True, help="the command that produced the run")
    parser.add_argument("--note", default="", help="e.g. what else ran on the machine meanwhile")
    parser.add_argument("--evaluation", type=Path, help="an evaluate JSON of the final model whose mIoU is the "
                        "row's figure (e.g. scored at another input scale than the run's validation)")
    args = parser.parse_args(argv)
    try:
        record = run_record(args.run_dir)
    except (OSError, ValueError, KeyError) as err:
        print(f"record_run.py: error: {args.run_dir}: not a finished run folder ({err})", file=sys.stderr)
        return 2
    if args.evaluation:
        scored = json.loads(args.evaluation.read_text())
        record["evaluation"] = {"file": str(args.evaluation), "settings": scored.get("settings"),
                                "summary": scored["summary"]}
        record["final_val_mIoU"] = scored["summary"]["mIoU"]
    record = {"name": args.name, "change": args.change, "command": args.command, "note": args.note,
              "run_dir": str(args.run_dir), "date": datetime.date.today().isoformat(), "cpu": cpu_model(), **record}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    miou = record["final_val_mIoU"]
    print(f"| {args.change} | {'n/a' if miou is None else f'{100 * miou:.1f}'} | {record['iterations']} | "
          f"{record['wall_minutes']:.0f} | `{args.name}.json` |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
