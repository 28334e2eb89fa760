"""The conversion cache of ``segzoo.load`` under real conditions: three processes filling an empty cache at once, a
read-only cache that already holds the download, and a cache moved to another path. Everything runs against the
local fake Hub (tests/support/fakehub.py), in real subprocesses where processes matter."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import segzoo
import segzoo.checkpoints._download as hub
from segzoo.checkpoints import get_pretrained_cfg

from support import REPO
from support.checkpoint_formats import hf_segformer_b0, serve_hf_model

# real processes, with their own time limits (up to 300 s) that fail with their output before pytest-timeout would
pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(600)]

HUB_REPO = "nvidia/segformer-b0-finetuned-ade-512-512"  # the source of the table row segformer-b0-ade

# Loads segformer-b0-ade once all workers are ready; a slow disk (a sleep after each safetensors write) keeps every
# process inside "written the temporary file, not yet renamed it" at the same time.
WORKER = """
import sys, time
from pathlib import Path
import safetensors.torch
_save = safetensors.torch.save_file
def slow_save(*args, **kwargs):
    _save(*args, **kwargs)
    time.sleep(1.5)
safetensors.torch.save_file = slow_save
import segzoo
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.05)
model = segzoo.load("segformer-b0-ade")
print("SUM", float(model.decode_head.linear_pred.weight.double().sum()))
"""


def _env(fake_hub, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=fake_hub.url,
        HF_HUB_CACHE=str(cache),
        HF_HOME=str(cache.parent),
        HF_TOKEN="hf_fake",
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_ALBUMENTATIONS_UPDATE="1",
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def test_three_processes_converting_into_an_empty_cache_all_succeed(fake_hub, tmp_path):
    reference = hf_segformer_b0()
    serve_hf_model(fake_hub, reference, HUB_REPO, tmp_path)
    cache, go = tmp_path / "shared" / "hub", tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"ready{i}"), str(go)],
            cwd=REPO,
            env=_env(fake_hub, cache),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        deadline = time.monotonic() + 240
        while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "a worker did not start"
            time.sleep(0.1)
        go.touch()
        results = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
    sums = {line for out, _ in results for line in out.splitlines() if line.startswith("SUM")}
    expected = float(reference.decode_head.classifier.weight.double().sum())
    assert len(sums) == 1 and abs(float(sums.pop().split()[1]) - expected) < 1e-6
    converted = sorted(p.name for p in (cache / "segzoo-converted").iterdir())
    assert len(converted) == 1 and converted[0].startswith("segformer-b0-")  # one entry, no temporary files left


def test_read_only_cache_holding_the_download_loads_and_warns_once(fake_hub, tmp_path):
    serve_hf_model(fake_hub, hf_segformer_b0(), HUB_REPO, tmp_path)
    cache = tmp_path / "readonly" / "hub"
    hub.download_file(get_pretrained_cfg("segformer-b0-ade"), cache_dir=cache)  # downloaded, never converted
    subprocess.run(["chmod", "-R", "a-w", str(cache.parent)], check=True)
    # root ignores file modes: run without the capabilities that let it, so the cache is read-only for real
    prefix = ["setpriv", "--bounding-set=-dac_override,-fowner"] if os.geteuid() == 0 else []
    code = (
        "import logging, segzoo; logging.basicConfig(); a = segzoo.load('segformer-b0-ade'); "
        "b = segzoo.load('segformer-b0-ade'); print('SAME', bool((a.decode_head.linear_pred.weight == "
        "b.decode_head.linear_pred.weight).all()))"
    )
    try:
        for offline in ("1", "0"):  # a shared read-only cache is used offline and online alike
            run = subprocess.run(
                [*prefix, sys.executable, "-c", code],
                check=False,
                cwd=REPO,
                capture_output=True,
                text=True,
                env=_env(fake_hub, cache, HF_HUB_OFFLINE=offline),
                timeout=300,
            )
            assert run.returncode == 0, run.stderr[-3000:]
            assert "SAME True" in run.stdout
            assert run.stderr.count("cannot keep the converted checkpoint") == 1, run.stderr[-3000:]
            assert "HF_HUB_CACHE" in run.stderr
        assert not (cache / "segzoo-converted").exists()
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(cache.parent)], check=True)


def test_moved_cache_reuses_its_converted_copy(fake_hub, tmp_path, monkeypatch, caplog):
    serve_hf_model(fake_hub, hf_segformer_b0(), HUB_REPO, tmp_path)
    first = segzoo.load("segformer-b0-ade")
    old_cache = Path(constants.HF_HUB_CACHE)
    new_cache = tmp_path / "elsewhere" / "hub"
    new_cache.parent.mkdir()
    shutil.move(old_cache, new_cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(new_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(fake_hub.requests)
    with caplog.at_level(logging.INFO, logger="segzoo"):
        again = segzoo.load("segformer-b0-ade")
    assert "converted" not in caplog.text  # read from the moved cache, not converted again
    assert len(list((new_cache / "segzoo-converted").iterdir())) == 1
    assert len(fake_hub.requests) == requests
    assert torch.equal(again.decode_head.linear_pred.weight, first.decode_head.linear_pred.weight)
