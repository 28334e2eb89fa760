"""Validates one fixed model on a folder of five validation images of several sizes (batches of two) with N CPU
processes (gloo) and writes the metrics, the confusion matrix and how many images each process scored. The module
keeps its defaults (4 overlay panels, the per-class table), as in the recipes.

Run as a script (``python tests/support/ddp_worker.py --devices 2 --data DIR --out metrics.json``), never inside pytest:
Lightning's DDP launcher re-runs this command line for each extra rank.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

import segzoo
from segzoo.data import FolderDataModule
from segzoo.training import SegmentationTask

NUM_CLASSES = 3


class CountImages(Callback):
    """Counts the validation images this process scores."""

    def __init__(self):
        self.images = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.images += len(batch["image"])


def build(data: str | os.PathLike) -> tuple[SegmentationTask, FolderDataModule]:
    """The same weights in every process; 5 validation images, so 2 processes get 3 and 2 (nothing repeated)."""
    torch.manual_seed(0)
    net = segzoo.create_model("segformer-test", num_classes=NUM_CLASSES)
    module = SegmentationTask(net, num_classes=NUM_CLASSES)
    datamodule = FolderDataModule(
        data, num_classes=NUM_CLASSES, eval_scale=(128, 64), val_batch_size=2, num_workers=0, crop_size=32
    )
    return module, datamodule


def validate(devices: int, data: str | os.PathLike, root_dir: str | os.PathLike | None = None) -> dict:
    """The validation metrics, the confusion matrix and this process's image count; overlays go to
    ``root_dir/val_overlays`` (the working directory when None)."""
    module, datamodule = build(data)
    counter = CountImages()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root_dir,
        callbacks=[counter],
    )
    trainer.validate(module, datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return metrics | {
        "world_size": trainer.world_size,
        "rank": trainer.global_rank,
        "images": counter.images,
        "confusion": module.confusion_matrices["val"].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = validate(args.devices, args.data)
    if result["world_size"] == args.devices:  # each process writes its own file
        Path(f"{args.out}.rank{result['rank']}").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
