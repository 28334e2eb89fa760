"""Validation metrics under 2-process DDP (CPU, gloo) equal those of a single process on the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Variables a parent DDP job (or an earlier in-process launch) may have left; the child must start clean.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK")


def test_two_process_ddp_gives_single_process_metrics(tmp_path):
    from ddp_worker import validate

    single = validate(devices=1)
    env = {k: v for k, v in os.environ.items() if k not in DDP_ENV}
    env |= {"OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = tmp_path / "ddp.json"
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_worker.py"), "--devices", "2", "--out", str(out)],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert ddp["world_size"] == 2
    assert set(ddp) == set(single)
    for key in ("val/miou", "val/macc", "val/acc"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
    per_class = [k for k in single if k.startswith("val/iou/")]
    assert per_class and all(ddp[k] == pytest.approx(single[k], abs=1e-6) for k in per_class)
    assert 0.0 < single["val/miou"] < 1.0
