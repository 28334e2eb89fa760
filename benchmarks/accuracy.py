"""Evaluate a checkpoint on a real dataset folder with the checkpoint's own protocol; print our mIoU beside the
publisher's.

    python benchmarks/accuracy.py --model segformer-b0-ade --data /data/ade           # ADEChallengeData2016 inside
    python benchmarks/accuracy.py --model setr-pup-cityscapes --data /data/cityscapes --tta
    python benchmarks/accuracy.py --model segformer-b0-ade --data /data/ade --limit 100 --csv acc.csv

The protocol is the checkpoint's own (``model.eval_protocol``, from ``checkpoints.yaml``), the one ``predict`` uses:
each original image is read, resized as ``uint8`` with OpenCV by the keep-ratio test rule (and ``size_divisor``),
normalised, run whole or by sliding window (with ``--tta``: multi-scale 0.5–1.75 + flip by the rule that produced the
published multi-scale number, mmseg 0.x or 1.x), and the logits are resized back to the original size before the
argmax. The ground truth is compared at its original size, as mmsegmentation does. Needs the dataset; not run in CI.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchmetrics.classification import MulticlassConfusionMatrix  # noqa: E402

import segzoo  # noqa: E402
from segzoo import data as datamodules  # noqa: E402
from segzoo.data import read_mask  # noqa: E402
from segzoo.training._module import segmentation_metrics  # noqa: E402

DATAMODULES = {  # checkpoints.yaml dataset key -> (DataModule class, extra arguments)
    "ade20k": (datamodules.ADE20KDataModule, {}),
    "cityscapes": (datamodules.CityscapesDataModule, {}),
    "pascal-context-59": (datamodules.PascalContextDataModule, {"num_classes": 59}),
    "pascal-context-60": (datamodules.PascalContextDataModule, {"num_classes": 60}),
    "coco-stuff-164k": (datamodules.COCOStuffDataModule, {}),
}


def validation_samples(cfg: dict, data_root: str, limit: int | None) -> tuple[list, np.ndarray | None]:
    """(image, mask) files of the checkpoint's dataset's validation split, and the label lookup table of its masks."""
    if cfg.get("dataset") not in DATAMODULES:
        raise SystemExit(f"no DataModule for dataset {cfg.get('dataset')!r}; known: {', '.join(DATAMODULES)}")
    cls, extra = DATAMODULES[cfg["dataset"]]
    samples, label_map = cls(data_root, batch_size=1, num_workers=0, **extra).find_samples("val")
    return samples[:limit] if limit else samples, label_map


def evaluate(name: str, data_root: str, tta: bool, limit: int | None, checkpoint: str | None) -> dict:
    model = segzoo.load(name, checkpoint=checkpoint)
    cfg = model.pretrained_cfg
    samples, label_map = validation_samples(cfg, data_root, limit)
    confusion = MulticlassConfusionMatrix(model.num_classes, ignore_index=cfg.get("ignore_index", 255))
    start = time.perf_counter()
    for image_path, mask_path in samples:
        labels = model.predict(image_path, tta=tta)  # at the original size, through the checkpoint's protocol
        mask = read_mask(mask_path)
        if label_map is not None:
            mask = label_map[mask]
        confusion.update(torch.from_numpy(labels), torch.from_numpy(mask.astype(np.int64)))
    seconds = time.perf_counter() - start
    results = segmentation_metrics(confusion.compute())
    published = (cfg.get("metrics") or {}).get("publisher") or (cfg.get("metrics") or {}).get("paper") or {}
    protocol = model.eval_protocol
    return {
        "checkpoint": name, "dataset": cfg.get("dataset"), "images": len(samples),
        "protocol": f"{protocol.mode}{f' + ms/flip ({protocol.tta_style})' if tta else ''}",
        "miou": round(100 * float(results["miou"]), 2), "macc": round(100 * float(results["macc"]), 2),
        "acc": round(100 * float(results["acc"]), 2),
        "published_miou": published.get("miou_ms" if tta else "miou_ss"), "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="checkpoint names from checkpoints.yaml")
    parser.add_argument("--data", required=True, help="dataset folder in its official layout")
    parser.add_argument("--checkpoint", default=None, help="local weights instead of the table's (one model only)")
    parser.add_argument("--tta", action="store_true", help="multi-scale 0.5-1.75 + flip (the papers' MS numbers)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N validation images only")
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.checkpoint and len(args.model) > 1:
        parser.error("--checkpoint goes with a single --model")
    rows = [evaluate(m, args.data, args.tta, args.limit, args.checkpoint) for m in args.model]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
