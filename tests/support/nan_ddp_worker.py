"""Trains 4 steps with 2 CPU processes (gloo), the loss NaN on rank 1 only at its second batch, and writes each rank's
skip count and weights' checksum to ``--out``. Run as a script, never inside pytest (Lightning's DDP launcher re-runs
this command line for rank 1)."""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import torch
from torch import nn

from segzoo.training import CrossEntropyLoss, SegmentationTask

from support.lit_helpers import ColourDataModule, TinySegNet


class NanOnRankOne(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls, self.ignore_index = 0, 255

    def forward(self, logits, target):
        loss = CrossEntropyLoss(ignore_index=self.ignore_index)(logits, target)
        self.calls += 1
        return loss * float("nan") if os.environ.get("LOCAL_RANK") == "1" and self.calls == 2 else loss


class HeadWeightEachStep(L.Callback):
    def __init__(self):
        self.weights = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.weights.append(pl_module.model.decode_head[0].weight.detach().clone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    module = SegmentationTask(
        TinySegNet(with_aux=False),
        num_classes=3,
        loss=NanOnRankOne(),
        num_log_images=0,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    )
    recorder = HeadWeightEachStep()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=4,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[recorder],
    )
    trainer.fit(module, ColourDataModule(num_train=16, batch_size=2))
    report = {
        "skipped": module.skipped_steps,
        "global_step": trainer.global_step,
        "unchanged_by_the_skipped_step": bool(torch.equal(recorder.weights[1], recorder.weights[2])),
        "checksum": float(sum(p.double().sum() for p in module.parameters())),
    }
    with open(f"{args.out}.rank{trainer.global_rank}.json", "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
