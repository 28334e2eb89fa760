"""Plot speed against published mIoU for every checkpoint, from ``speed.py --checkpoints --csv``.

python benchmarks/speed.py --checkpoints --csv benchmarks/results/checkpoints_cpu.csv
python benchmarks/plot.py benchmarks/results/checkpoints_cpu.csv benchmarks/speed_vs_miou.png
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

FAMILY_STYLE = {"segformer": ("tab:blue", "o"), "segmenter": ("tab:green", "s"), "setr": ("tab:red", "^")}


def plot(csv_path: Path, out: Path) -> None:
    rows = [r for r in csv.DictReader(open(csv_path)) if r.get("miou_ss")]
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for family, (color, marker) in FAMILY_STYLE.items():
            points = [r for r in rows if r["dataset"] == dataset and r["arch"].startswith(family)]
            if not points:
                continue
            ax.scatter(
                [1000 / float(r["latency_ms"]) for r in points],
                [float(r["miou_ss"]) for r in points],
                color=color,
                marker=marker,
                label=family,
                s=40,
            )
            for r in points:
                ax.annotate(
                    r["checkpoint"].replace("-ade", "").replace("-cityscapes", ""),
                    (1000 / float(r["latency_ms"]), float(r["miou_ss"])),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("crop-sized forward passes per second (log scale)")
        ax.set_ylabel("published single-scale mIoU (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"segzoo checkpoints: speed on this machine vs published mIoU ({rows[0]['dtype']}, batch 1)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    plot(Path(sys.argv[1]), Path(sys.argv[2]))
