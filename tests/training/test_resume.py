"""Resuming a killed run from its checkpoint continues at the same iteration with the same learning rate."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import torch

from segzoo.training import cli_main

from support import REPO
from support.lit_helpers import SimulatedKill

TINY = str(REPO / "configs" / "test" / "tiny.yaml")
# 8 steps (2 epochs of 4 batches), a warm-up and poly decay, the learning rate logged every step, validation and
# checkpoints (best and last) every 3 steps, as a long recipe validates every 16k iterations; last.ckpt only at
# validation here (no rolling save every N steps: tests/training/test_interrupt.py checks that one).
COMMON = [
    "--config", TINY, "--trainer.max_steps=8", "--model.lr_scheduler.init_args.warmup_iters=4",
    "--trainer.val_check_interval=3", "--trainer.check_val_every_n_epoch=null",
    "--last_checkpoint.every_n_train_steps=0",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip


def logged_lrs(log_dir: Path) -> dict[int, tuple[float, ...]]:
    """Step → learning rate of every parameter group, from LearningRateMonitor's columns in metrics.csv."""
    with open(log_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = sorted(c for c in rows[0] if c.startswith("lr-"))
    return {int(r["step"]): tuple(float(r[c]) for c in columns) for r in rows if r[columns[0]]}


@pytest.mark.slow
def test_resume_continues_step_and_learning_rate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    reference = cli_main(["fit", *COMMON, "--trainer.logger.init_args.name=reference"])
    reference_lrs = logged_lrs(Path(reference.trainer.log_dir))
    assert sorted(reference_lrs) == list(range(8))

    # The same run killed when about to run its fifth step, one step after the checkpoint of step 3.
    with pytest.raises(SimulatedKill):
        cli_main(
            ["fit", *COMMON, "--trainer.logger.init_args.name=killed",
             "--trainer.callbacks+=support.lit_helpers.KillAtStep", "--trainer.callbacks.step=4"]
        )  # fmt: skip
    last = tmp_path / "runs" / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3

    resumed = cli_main(["fit", *COMMON, "--trainer.logger.init_args.name=resumed", "--ckpt_path", str(last)])
    assert resumed.trainer.global_step == 8
    resumed_lrs = logged_lrs(Path(resumed.trainer.log_dir))
    assert min(resumed_lrs) == 3  # the first step after the checkpoint, not a restart at 0
    for step in range(3, 8):
        assert resumed_lrs[step] == pytest.approx(reference_lrs[step], rel=1e-9), step
    assert resumed_lrs[3] != pytest.approx(reference_lrs[0])  # a restarted schedule would be caught
