"""Start-up cost of the command line: wall time (best of --repeat runs, a fresh interpreter each, as the ``segzoo``
console script starts), peak RSS, and whether torch or Lightning were imported.

    python benchmarks/startup.py [--repeat 5] [--csv benchmarks/results/startup.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "albumentations", "timm")

# What the segzoo console script runs (segzoo._cli:main), then a report of the process: peak RSS and heavy imports.
CHILD = """
import json, os, resource, sys
from segzoo._cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(os.environ["SEGZOO_STARTUP_HEAVY"].split(",")))
with open(os.environ["SEGZOO_STARTUP_REPORT"], "w") as report:
    json.dump({"rss_mb": rss_mb, "imported": heavy}, report)
"""


def commands(empty_folder: Path) -> dict[str, list[str]]:
    return {
        "segzoo --help": ["--help"],
        "segzoo predict --help": ["predict", "--help"],
        "segzoo data check <empty folder>": ["data", "check", str(empty_folder)],
        "segzoo train --help": ["train", "--help"],
    }


def measure(args: list[str], repeat: int = 3) -> dict:
    """Best wall time (s) over ``repeat`` fresh processes, their largest peak RSS (MB) and the heavy modules
    imported."""
    best, rss, imported = float("inf"), 0.0, []
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        SEGZOO_STARTUP_HEAVY=",".join(HEAVY),
    )
    with tempfile.TemporaryDirectory() as tmp:
        env["SEGZOO_STARTUP_REPORT"] = report = os.path.join(tmp, "report.json")
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", CHILD, *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            best = min(best, time.perf_counter() - start)
            with open(report) as file:
                result = json.load(file)
            rss, imported = max(rss, result["rss_mb"]), result["imported"]
    return {"wall_s": round(best, 2), "peak_rss_mb": round(rss), "imported": imported}


def main(argv: list[str] | None = None, only: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (the best wall time is kept)")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as empty:
        for name, command in commands(Path(empty)).items():
            if only is None or name in only:
                rows.append({"command": name, **measure(command, args.repeat)})
    print("| command | wall time (s) | peak RSS (MB) | heavy modules imported |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| `{row['command']}` | {row['wall_s']} | {row['peak_rss_mb']} | {', '.join(row['imported']) or '-'} |")
    if args.csv:
        with open(args.csv, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["command", "wall_s", "peak_rss_mb", "imported"])
            writer.writeheader()
            writer.writerows({**row, "imported": " ".join(row["imported"])} for row in rows)
    return rows


if __name__ == "__main__":
    main()
