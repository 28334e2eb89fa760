"""Multi-process training on CPU (gloo), run as the recipes run it: ``python train.py fit`` with overlays, the
per-class table and W&B (offline), on 2 processes of one "node" and on 2 "nodes" (two launched processes that find
each other through Lightning's environment variables, as on a cluster). Every rank must finish; SIGTERM must end a
run, stuck or not.

Every run here is a subprocess in its own session, killed as a whole (SIGKILL to the process group) when it overruns
its time limit, so a hang fails the test instead of hanging it (:mod:`support.processes`).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import REPO, TESTS
from support.processes import alive, clean_env, finish, free_port, kill_group, start, wait_for

pytestmark = pytest.mark.multiprocess

TRAIN = str(REPO / "train.py")
TINY = str(REPO / "configs" / "test" / "tiny.yaml")
DDP_WORKER = str(TESTS / "support" / "ddp_worker.py")
RUN_TIMEOUT = 150  # seconds; a run takes ~15 s on 2 cores

# The recipes' loggers: CSV (metrics.csv, log_dir for the overlays) and W&B, which gets the overlays and the table.
LOGGERS_YAML = """\
trainer:
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {save_dir: runs, name: tiny}
    - class_path: lightning.pytorch.loggers.WandbLogger
      init_args: {save_dir: ., project: segzoo-test, offline: true}
"""


def train_command(out: Path, *args: str) -> list[str]:
    """``python train.py fit`` on the tiny config with the recipes' loggers, reporting each rank's end into ``out``.
    Five validation scenes: the processes validate 3 and 2 of them (uneven, as segzoo's DataModules split evaluation
    data without repeats), which the DDP-wrapped model must survive."""
    loggers = out / "loggers.yaml"
    loggers.parent.mkdir(parents=True, exist_ok=True)
    loggers.write_text(LOGGERS_YAML)
    return [
        sys.executable, TRAIN, "fit", "--config", TINY, "--config", str(loggers),
        "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=support.lit_helpers.RankReport", f"--trainer.callbacks.out_dir={out}",
        "--data.init_args.num_val", "5", *args,
    ]  # fmt: skip


def assert_every_rank_finished(out: Path, world_size: int, validations: int) -> None:
    for rank in range(world_size):
        done = out / f"done-rank{rank}.json"
        assert done.exists(), f"rank {rank} did not finish its run"
        report = json.loads(done.read_text())
        assert report["world_size"] == world_size
        assert report["global_step"] == 4
        assert report["validations"] == validations, report


def assert_logs_overlays_and_wandb(run_dir: Path, stdout: str) -> None:
    """What rank 0 writes at each validation: metrics.csv rows, overlay panels, the per-class table (printed and in
    W&B) and the overlays in W&B."""
    log_dir = run_dir / "runs" / "tiny" / "version_0"
    with open(log_dir / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/miou")]
    assert [int(row["step"]) for row in rows] == [1, 3]  # after steps 2 and 4 (the CSV's step is 0-based)
    for epoch in (0, 1):
        panels = sorted((log_dir / "val_overlays" / f"epoch={epoch}").glob("*.png"))
        assert len(panels) == 3, panels  # the default 4, but rank 0 holds 3 of the 5 validation images
    assert "val (epoch 0, step 2): mIoU" in stdout and "val (epoch 1, step 4): mIoU" in stdout
    assert (log_dir / "checkpoints" / "last.ckpt").exists()
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    media = wandb_run / "files" / "media"
    assert len(list(media.rglob("*.png"))) >= 4, "the overlays of both validations were not logged to W&B"
    assert len(list(media.rglob("*.table.json"))) >= 2, "the per-class table was not logged to W&B"


def test_two_process_ddp_gives_single_process_metrics(tmp_path):
    """Five validation images of several sizes in batches of two: the two processes score 3 and 2 of them (Lightning's
    default DistributedSampler would repeat one to even them out and count its pixels twice), and the summed confusion
    matrix is that of one process."""
    from support.ddp_worker import validate
    from support.fake_datasets import make_folder_of_sizes

    data = make_folder_of_sizes(tmp_path / "data")
    single = validate(devices=1, data=data, root_dir=tmp_path / "single")
    out = tmp_path / "ddp.json"
    proc = start(
        [sys.executable, DDP_WORKER, "--devices", "2", "--data", str(data), "--out", str(out)],
        tmp_path, clean_env(),
    )  # fmt: skip
    ((returncode, _, stderr),) = finish([proc], RUN_TIMEOUT)
    assert returncode == 0, stderr[-3000:]
    ranks = [json.loads(Path(f"{out}.rank{rank}").read_text()) for rank in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["images"] for r in ranks] == [3, 2]
    assert single["images"] == 5
    for ddp in ranks:
        assert ddp["confusion"] == single["confusion"]  # summed over the processes, every pixel once
        assert set(ddp) == set(single)
        for key in ("val/miou", "val/macc", "val/acc"):
            assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
        per_class = [k for k in single if k.startswith("val/iou/")]
        assert per_class and all(ddp[k] == pytest.approx(single[k], abs=1e-6) for k in per_class)
    assert 0.0 < single["val/miou"] < 1.0
    assert list((tmp_path / "val_overlays" / "epoch=0").glob("*.png")), "overlays on (the default) in the DDP run"


def test_two_devices_ddp_fit_with_recipe_defaults_finishes_on_every_rank(tmp_path):
    out = tmp_path / "report"
    proc = start(train_command(out, "--trainer.devices", "2"), tmp_path / "run", clean_env())
    ((returncode, stdout, stderr),) = finish([proc], RUN_TIMEOUT)
    assert returncode == 0, stderr[-3000:]
    assert_every_rank_finished(out, world_size=2, validations=2)
    assert_logs_overlays_and_wandb(tmp_path / "run", stdout)


def test_two_nodes_ddp_fit_with_recipe_defaults_finishes_on_every_node(tmp_path):
    """Two processes standing in for two nodes, each launched by hand with the cluster's variables, each in its own
    directory (no shared file system): node 0 writes every log."""
    out = tmp_path / "report"
    port = str(free_port())
    procs = [
        start(
            train_command(out, "--trainer.num_nodes", "2", "--trainer.devices", "1"),
            tmp_path / f"node{node}",
            clean_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(node), WORLD_SIZE="2"),
        )
        for node in (0, 1)
    ]
    results = finish(procs, RUN_TIMEOUT)
    for node, (returncode, _, stderr) in enumerate(results):
        assert returncode == 0, f"node {node}: {stderr[-3000:]}"
    assert_every_rank_finished(out, world_size=2, validations=2)
    assert_logs_overlays_and_wandb(tmp_path / "node0", results[0][1])


def assert_all_gone_after_sigterm(launcher: subprocess.Popen, pids: list[int], bound: float) -> tuple[float, str]:
    """SIGTERM to the launcher (rank 0), then every process of the run must be gone within ``bound`` seconds."""
    sent = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    while any(alive(pid) for pid in pids) and time.monotonic() - sent < bound:
        time.sleep(0.1)
    elapsed = time.monotonic() - sent
    survivors = [pid for pid in pids if alive(pid)]
    kill_group(launcher)
    _, stderr = launcher.communicate()
    assert not survivors, f"processes {survivors} still alive {bound} s after SIGTERM; stderr tail:\n{stderr[-3000:]}"
    return elapsed, stderr


def test_sigterm_ends_a_ddp_run_stuck_in_a_collective_on_every_rank(tmp_path):
    out = tmp_path / "report"
    grace = 3
    launcher = start(
        train_command(
            out, "--trainer.devices", "2", f"--sigterm.grace_period={grace}",
            "--trainer.callbacks+=support.lit_helpers.BlockRankZeroInCollective", f"--trainer.callbacks.out_dir={out}",
        ),
        tmp_path / "run",
        clean_env(),
    )  # fmt: skip
    try:
        wait_for(out / "blocked", RUN_TIMEOUT, [launcher])
        time.sleep(1.0)  # rank 1 reaches its reduction and blocks there too
        pids = [launcher.pid, int((out / "pid-rank1.txt").read_text())]
        assert all(alive(pid) for pid in pids)
        elapsed, stderr = assert_all_gone_after_sigterm(launcher, pids, bound=2 * grace + 12)
    finally:
        kill_group(launcher)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received" in stderr and "in recv" in stderr  # the watchdog's stack dump shows where it hung
    assert not list(out.glob("done-rank*.json"))
    print(f"stuck run gone {elapsed:.1f} s after SIGTERM (grace {grace} s)")


def test_sigterm_stops_a_running_ddp_fit_on_every_rank_without_a_collective_mismatch(tmp_path):
    """The orderly stop (no watchdog): Lightning 2.6's own handler broadcast from inside the signal handler, which
    met the other rank's DDP buffer broadcast and aborted gloo ("collective mismatch", exit status 1)."""
    out = tmp_path / "report"
    launcher = start(
        train_command(out, "--trainer.devices", "2", "--trainer.max_steps", "100000"),  # default grace period (20 s)
        tmp_path / "run",
        clean_env(),
    )
    try:
        wait_for(tmp_path / "run" / "runs" / "tiny" / "version_0" / "val_overlays" / "epoch=0", RUN_TIMEOUT, [launcher])
        pids = [launcher.pid, int((out / "pid-rank1.txt").read_text())]
        elapsed, stderr = assert_all_gone_after_sigterm(launcher, pids, bound=30)
    finally:
        kill_group(launcher)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr[-3000:]  # not 0: the run did not finish
    assert "has not stopped" not in stderr  # Lightning's orderly stop did it, not the watchdog
    assert "mismatch" not in stderr and "Connection reset" not in stderr, stderr[-3000:]
    assert stderr.count("Received SIGTERM") == 2  # both ranks: the launcher forwarded it
    assert not list(out.glob("done-rank*.json"))  # stopped, not finished
    print(f"running fit gone {elapsed:.1f} s after SIGTERM")


def test_sigterm_during_ddp_training_saves_last_checkpoint_on_every_rank_agreement(tmp_path):
    """SIGTERM in a training step: every rank stops at the start of the same next step and the run saves last.ckpt
    there; no validation and no rolling save, so last.ckpt can only come from the stop."""
    out = tmp_path / "report"
    launcher = start(
        train_command(
            out, "--trainer.devices", "2", "--trainer.max_steps", "100000", "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0", "--last_checkpoint.every_n_train_steps", "100000",
            "--trainer.callbacks+=support.lit_helpers.MarkStep", f"--trainer.callbacks.out_dir={out}",
            "--trainer.callbacks.step=3",
        ),
        tmp_path / "run",
        clean_env(),
    )  # fmt: skip
    try:
        wait_for(out / "step-3", RUN_TIMEOUT, [launcher])
        pids = [launcher.pid, int((out / "pid-rank1.txt").read_text())]
        elapsed, stderr = assert_all_gone_after_sigterm(launcher, pids, bound=30)
    finally:
        kill_group(launcher)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "has not stopped" not in stderr and "mismatch" not in stderr, stderr[-3000:]
    last = tmp_path / "run" / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.exists(), f"no last.ckpt after SIGTERM; stderr tail:\n{stderr[-3000:]}"
    import torch

    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= 3
    assert f"SIGTERM: saved runs/tiny/version_0/checkpoints/last.ckpt at step {checkpoint['global_step']}" in stderr
    print(f"DDP run saved step {checkpoint['global_step']} and was gone {elapsed:.1f} s after SIGTERM")
