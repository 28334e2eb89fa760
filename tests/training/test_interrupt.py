"""Nothing lost when a run is stopped: Ctrl-C and SIGTERM save ``last.ckpt`` and ``--ckpt_path``
resumes from its step; ``last.ckpt`` is also rewritten every N steps; a checkpoint of another architecture than the
one asked for is refused, and a truncated one is named.

The signals go to ``python train.py`` subprocesses in their own session, killed as a whole (SIGKILL to the process
group) if they overrun, so a hang fails the test instead of hanging it; the failure says whether the run was slow
(still using CPU) or hung (alive without using CPU, with its threads' stacks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import torch

from segzoo import CheckpointMismatchError, CheckpointReadError
from segzoo.training import cli_main, main

from support import REPO
from support.processes import clean_env, kill_group

TRAIN = str(REPO / "train.py")
TINY = str(REPO / "configs" / "test" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# How long a phase of the interrupted run (start to step 3; signal to exit) may take. Measured on 2 busy cores (load
# average 9): about 28 s to step 3, and 9 s from the signal to the exit (1 s to save last.ckpt, the rest the
# interpreter's own shutdown). A run that still uses CPU at RUN_LIMIT is slow; one alive without using any CPU for
# STALL_LIMIT seconds is hung (blocked), and its threads' stacks are printed.
RUN_LIMIT = 240
STALL_LIMIT = 30


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments are in sys.argv next to ``args``."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


def cpu_seconds(pid: int) -> float | None:
    """CPU time the process has used (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ignores(pid: int, signum: int) -> bool:
    """Whether the process ignores ``signum`` (the SigIgn mask of Linux /proc)."""
    try:
        mask = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask.split()[1], 16) >> (signum - 1) & 1)


def wait_for(proc: subprocess.Popen, done, what: str, log: Path) -> None:
    """Waits until ``done()`` or the process ends; fails saying whether the run is slow (still using CPU after
    RUN_LIMIT seconds) or hung (alive, no CPU used for STALL_LIMIT seconds: its threads' stacks are in the message)."""
    start = last_progress = time.monotonic()
    last_cpu = cpu_seconds(proc.pid)
    while not done() and proc.poll() is None:
        time.sleep(0.2)
        now, used = time.monotonic(), cpu_seconds(proc.pid)
        if used is None or last_cpu is None or used > last_cpu + 0.05:
            last_cpu, last_progress = used, now
        if now - last_progress > STALL_LIMIT:
            proc.send_signal(signal.SIGABRT)  # python -X faulthandler prints every thread's stack, then aborts
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            kill_group(proc)
            pytest.fail(
                f"HANG while {what}: the run is alive but used no CPU for {STALL_LIMIT} s (blocked); its "
                f"output and its threads' stacks:\n{log.read_text()[-6000:]}"
            )
        if now - start > RUN_LIMIT:
            kill_group(proc)
            pytest.fail(
                f"SLOW while {what}: still running and using CPU after {RUN_LIMIT} s ({last_cpu} s of CPU): "
                f"an overloaded machine, not a hang; its output:\n{log.read_text()[-3000:]}"
            )


def run_until_step_then_signal(run_dir: Path, signum: int, step: int = 3) -> tuple[int, str]:
    """Starts an endless tiny fit (no validation, rolling checkpoint far away) in ``run_dir``, sends ``signum`` once
    ``step`` steps are done, and returns its exit status and stderr.

    The run gets the default action for SIGINT whatever the test process has: a process started as a background job
    of a shell script (``pytest ... &``) or under nohup inherits SIGINT ignored, and then Python installs no
    KeyboardInterrupt handler, so Ctrl-C would never stop the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marks, log = run_dir / "marks", run_dir / "stderr.txt"
    command = [
        sys.executable, "-X", "faulthandler", TRAIN, "fit", "--config", TINY, *QUIET, "--trainer.max_steps=100000",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--last_checkpoint.every_n_train_steps=100000",
        "--trainer.callbacks+=support.lit_helpers.MarkStep", f"--trainer.callbacks.out_dir={marks}",
        f"--trainer.callbacks.step={step}",
    ]  # fmt: skip
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            command, cwd=run_dir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        wait_for(proc, (marks / f"step-{step}").exists, f"waiting for step {step}", log)
        if proc.poll() is not None:
            pytest.fail(f"the run ended before step {step}:\n{log.read_text()[-3000:]}")
        assert not ignores(proc.pid, signum), f"the run ignores {signal.Signals(signum).name}"
        proc.send_signal(signum)
        wait_for(proc, lambda: False, f"waiting for the run to exit after {signal.Signals(signum).name}", log)
    finally:
        kill_group(proc)
    return proc.wait(), log.read_text()


@pytest.mark.multiprocess
@pytest.mark.timeout(600)  # above the run's own limits (RUN_LIMIT per phase), which say slow or hung
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 1), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_ctrl_c_and_sigterm_save_a_last_checkpoint_that_resumes_at_its_step(signum, status, tmp_path, monkeypatch):
    returncode, stderr = run_until_step_then_signal(tmp_path, signum)
    assert returncode == status, stderr[-3000:]
    last = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.exists(), f"no last.ckpt after {signal.Signals(signum).name}; stderr:\n{stderr[-3000:]}"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    saved_step = checkpoint["global_step"]
    assert saved_step >= 3  # the steps done before the signal, not the start
    assert {"state_dict", "optimizer_states", "lr_schedulers", "loops"} <= set(checkpoint)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"{name}: saved {last.relative_to(tmp_path)} at step {saved_step}; resume with --ckpt_path" in stderr

    # --ckpt_path last finds it (in version_0, while this run logs to version_1) and continues from its step.
    monkeypatch.chdir(tmp_path)
    resumed = cli_main(
        ["fit", "--config", TINY, *QUIET, f"--trainer.max_steps={saved_step + 2}", "--trainer.limit_val_batches=0",
         "--trainer.callbacks+=support.lit_helpers.MarkStep", f"--trainer.callbacks.out_dir={tmp_path / 'resumed'}",
         "--ckpt_path", "last"]
    )  # fmt: skip
    (mark,) = [c for c in resumed.trainer.callbacks if type(c).__name__ == "MarkStep"]
    assert mark.first_step == saved_step
    assert resumed.trainer.global_step == saved_step + 2
    assert Path(resumed.trainer.ckpt_path).resolve() == last.resolve()


@pytest.mark.slow
def test_last_checkpoint_is_rewritten_every_n_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(
        ["fit", "--config", TINY, *QUIET, "--trainer.max_steps=7", "--trainer.limit_val_batches=0",
         "--last_checkpoint.every_n_train_steps=3", "--trainer.callbacks+=support.lit_helpers.LastCheckpointSteps"]
    )  # fmt: skip
    (recorder,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "LastCheckpointSteps"]
    # global step at the start of a batch -> step of the last.ckpt on disk then
    assert recorder.seen == {0: None, 1: None, 2: None, 3: 3, 4: 3, 5: 3, 6: 6}
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 7  # and at the end


@pytest.fixture(scope="module")
def segformer_checkpoint(tmp_path_factory) -> Path:
    """A one-step checkpoint of the tiny config's ``segformer-test``."""
    folder = tmp_path_factory.mktemp("segformer-run")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        cli = cli_main(["fit", "--config", TINY, *QUIET, "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
        path = (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").resolve()
    finally:
        os.chdir(cwd)
    assert torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]["model"] == "segformer-test"
    return path


def test_resume_with_a_checkpoint_of_another_architecture_is_refused(segformer_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointMismatchError) as error:
        cli_main(["fit", "--config", TINY, *QUIET, "--model.model", "setr-test-pup", "--ckpt_path",
                  str(segformer_checkpoint)])  # fmt: skip
    message = str(error.value)
    assert "'segformer-test'" in message and "'setr-test-pup'" in message and str(segformer_checkpoint) in message
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_resume_refusal_is_one_line_with_status_2(segformer_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["train.py", "validate", "--config", TINY, "--model.model", "segmenter-test-mask",
                      "--ckpt_path", str(segformer_checkpoint)]
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train.py: error: --ckpt_path") and "'segmenter-test-mask'" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_truncated_ckpt_path_is_named_as_truncated(segformer_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truncated = tmp_path / "half.ckpt"
    data = segformer_checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="truncated or corrupt") as error:
        cli_main(["fit", "--config", TINY, *QUIET, "--ckpt_path", str(truncated)])
    assert f"--ckpt_path {truncated}" in str(error.value)
    # the same file as the weights to start from
    with pytest.raises(CheckpointReadError, match="truncated or corrupt") as error:
        cli_main(["fit", "--config", TINY, *QUIET, "--trainer.max_steps=1", "--model.init_from", str(truncated)])
    assert f"init_from {truncated}" in str(error.value)
