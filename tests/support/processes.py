"""Subprocesses for the multi-process and signal tests: each in its own session, killed as a whole (SIGKILL to the
process group) when it overruns, so a hang fails the test instead of hanging it (see ../shared/ENVIRONMENT.md,
"Lightning on CPU")."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import TESTS

# Variables a parent DDP job (or an earlier in-process launch) may have left; the child must start clean.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without DDP variables, with ``tests/`` on ``PYTHONPATH`` (so a worker or a
    ``--trainer.callbacks+=support.lit_helpers.X`` class path imports the support package), one thread and W&B
    offline."""
    env = {k: v for k, v in os.environ.items() if k not in DDP_ENV}
    env |= {
        "OMP_NUM_THREADS": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "COLUMNS": "200",  # the per-class table and its summary line unwrapped
        "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    return env | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int | None, str, str]]:
    """Waits for every process (all share one deadline); on overrun kills every process group and fails."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        for proc in procs:
            kill_group(proc)
        outputs = [proc.communicate() for proc in procs]
        tails = "\n".join(f"--- process {i}:\n{err[-2500:]}" for i, (_, err) in enumerate(outputs))
        pytest.fail(f"the run did not finish within {timeout} s (hung?); killed. stderr tails:\n{tails}")
    finally:
        for proc in procs:
            kill_group(proc)  # ranks the launcher left behind
    return results


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(path: Path, timeout: float, procs: list[subprocess.Popen]) -> None:
    """Waits until ``path`` exists; kills every process and fails when one ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for proc in procs:
                kill_group(proc)
            errs = [proc.communicate()[1][-2500:] for proc in procs]
            pytest.fail(f"{path.name} never appeared; stderr tails:\n" + "\n---\n".join(errs))
        time.sleep(0.2)
