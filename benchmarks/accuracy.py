"""Evaluate a checkpoint on a real dataset folder with the checkpoint's own protocol; print our mIoU beside the
publisher's.

    python benchmarks/accuracy.py --model segformer-b0-ade --data /data/ade           # ADEChallengeData2016 inside
    python benchmarks/accuracy.py --model setr-pup-cityscapes --data /data/cityscapes --tta
    python benchmarks/accuracy.py --model segformer-b0-ade --data /data/ade --limit 100 --csv acc.csv

The protocol comes from ``checkpoints.yaml``: normalisation, keep-ratio test resize (``eval.scale``), whole image or
sliding window (``eval.crop``/``eval.stride``), and with ``--tta`` multi-scale 0.5–1.75 + flip. Ground truth is
compared at the resized evaluation size (see ``segzoo.data.transforms``). Needs the dataset; not run in CI.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

import segzoo  # noqa: E402
from segzoo import data as datamodules  # noqa: E402
from segzoo.lit import SegmentationModule  # noqa: E402

DATAMODULES = {  # checkpoints.yaml dataset key -> (DataModule class, extra arguments)
    "ade20k": (datamodules.ADE20KDataModule, {}),
    "cityscapes": (datamodules.CityscapesDataModule, {}),
    "pascal-context-59": (datamodules.PascalContextDataModule, {"num_classes": 59}),
    "pascal-context-60": (datamodules.PascalContextDataModule, {"num_classes": 60}),
    "coco-stuff-164k": (datamodules.COCOStuffDataModule, {}),
}


def build_datamodule(cfg: dict, data_root: str, limit: int | None, num_workers: int) -> L.LightningDataModule:
    """The checkpoint's dataset in its evaluation pipeline (its mean/std and keep-ratio test scale)."""
    if cfg.get("dataset") not in DATAMODULES:
        raise SystemExit(f"no DataModule for dataset {cfg.get('dataset')!r}; known: {', '.join(DATAMODULES)}")
    cls, extra = DATAMODULES[cfg["dataset"]]
    dm = cls(
        data_root, eval_scale=tuple(cfg["test_scale"]) if cfg.get("test_scale") else None, mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]), batch_size=1, num_workers=num_workers, **extra,
    )
    dm.setup("validate")
    if limit:
        dm.datasets["val"] = Subset(dm.datasets["val"], range(min(limit, len(dm.datasets["val"]))))
    return dm


def evaluate(name: str, data_root: str, tta: bool, limit: int | None, num_workers: int, checkpoint: str | None):
    model = segzoo.load(name, checkpoint=checkpoint)
    cfg = model.pretrained_cfg
    dm = build_datamodule(cfg, data_root, limit, num_workers)
    module = SegmentationModule(model=model, num_classes=model.num_classes, test_tta=tta, num_log_images=0)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False)
    start = time.perf_counter()
    results = trainer.test(module, dataloaders=dm.val_dataloader())[0]
    seconds = time.perf_counter() - start
    published = (cfg.get("metrics") or {}).get("publisher") or (cfg.get("metrics") or {}).get("paper") or {}
    return {
        "checkpoint": name, "dataset": cfg.get("dataset"), "images": len(dm.datasets["val"]),
        "protocol": f"{cfg.get('eval_mode')}{' + ms/flip' if tta else ''}",
        "miou": round(100 * results["test/miou"], 2), "macc": round(100 * results["test/macc"], 2),
        "acc": round(100 * results["test/acc"], 2),
        "published_miou": published.get("miou_ms" if tta else "miou_ss"), "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="checkpoint names from checkpoints.yaml")
    parser.add_argument("--data", required=True, help="dataset folder in its official layout")
    parser.add_argument("--checkpoint", default=None, help="local weights instead of the table's (one model only)")
    parser.add_argument("--tta", action="store_true", help="multi-scale 0.5-1.75 + flip (the papers' MS numbers)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N validation images only")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.checkpoint and len(args.model) > 1:
        parser.error("--checkpoint goes with a single --model")
    rows = [evaluate(m, args.data, args.tta, args.limit, args.num_workers, args.checkpoint) for m in args.model]
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
