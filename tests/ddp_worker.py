"""Validates one fixed model on the synthetic validation set with N CPU processes (gloo) and writes the metrics.
The module keeps its defaults (4 overlay panels, the per-class table), as in the recipes.

Run as a script (``python tests/ddp_worker.py --devices 2 --out metrics.json``), never inside pytest: Lightning's
DDP launcher re-runs this command line for each extra rank.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import torch

import segzoo
from segzoo.data import SyntheticDataModule
from segzoo.training._module import SegmentationModule

NUM_CLASSES = 3


def build() -> tuple[SegmentationModule, SyntheticDataModule]:
    """The same weights in every process; 6 validation images so that 2 ranks split them without padding."""
    torch.manual_seed(0)
    net = segzoo.create_model("segformer-test", num_classes=NUM_CLASSES)
    module = SegmentationModule(net, num_classes=NUM_CLASSES)
    data = SyntheticDataModule(num_classes=NUM_CLASSES, image_size=32, num_train=4, num_val=6, batch_size=2)
    return module, data


def validate(devices: int, root_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """The validation metrics; overlays go to ``root_dir/val_overlays`` (the working directory when None)."""
    module, data = build()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root_dir,
    )
    trainer.validate(module, data, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    metrics["world_size"] = trainer.world_size
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    metrics = validate(args.devices)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and metrics.get("world_size") == args.devices:
        with open(args.out, "w") as f:
            json.dump(metrics, f)


if __name__ == "__main__":
    main()
