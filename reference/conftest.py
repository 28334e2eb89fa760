"""Fixtures for the mmsegmentation reference-parity tests (reference/README.md).

The session fixture ``mmseg_ref`` runs ``reference/mmseg_side.py`` with the reference environment's python
(``SEGZOO_MMSEG_PYTHON``, default ``<repo>/.venv-mmseg/bin/python``) into a temporary folder, or reuses the folder
named by ``SEGZOO_MMSEG_OUT`` when it already holds a complete run (running into it otherwise). Without the
reference environment every test fails, saying how to build it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads: every file is written by mmseg_side.py
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from parity_cases import MODELS, Reference, TrainReference

REPO = Path(__file__).resolve().parents[1]
SIDE_SCRIPT = REPO / "reference" / "mmseg_side.py"
TRAIN_SIDE_SCRIPT = REPO / "reference" / "mmseg_train_side.py"
TEST_LOOP_SCRIPT = REPO / "reference" / "mmseg_test_loop.py"
SIDE_TIMEOUT_S = 1800

SETUP_HINT = "build it with `bash reference/setup.sh` (or point SEGZOO_MMSEG_PYTHON at a python that has mmseg 1.2.2)"


def _complete(out: Path, manifest_name: str = "manifest.json") -> bool:
    manifest = out / manifest_name
    if not manifest.exists():
        return False
    data = json.loads(manifest.read_text())
    return bool(data.get("complete"))


def _reference_python() -> str:
    python = os.environ.get("SEGZOO_MMSEG_PYTHON", str(REPO / ".venv-mmseg" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(
            f"the mmsegmentation reference environment is missing ({python} not found): {SETUP_HINT}", pytrace=False
        )
    return python


def _run_side(python: str, out: Path, script: Path = SIDE_SCRIPT, extra: tuple[str, ...] = ()) -> None:
    cmd = [python, str(script), "--out", str(out), *extra]
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{script.stem}.log"
    with log.open("w") as stream:
        try:
            proc = subprocess.run(
                cmd, check=False, stdout=stream, stderr=subprocess.STDOUT, timeout=SIDE_TIMEOUT_S, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(cmd)} ran past {SIDE_TIMEOUT_S} s (log: {log})", pytrace=False)
    if proc.returncode != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"{' '.join(cmd)} failed (exit {proc.returncode}), log {log}:\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def mmseg_ref(tmp_path_factory) -> Reference:
    given = os.environ.get("SEGZOO_MMSEG_OUT")
    out = Path(given) if given else tmp_path_factory.mktemp("mmseg-ref")
    if not _complete(out):
        _run_side(_reference_python(), out)
        if not _complete(out):
            pytest.fail(f"{SIDE_SCRIPT.name} finished but {out}/manifest.json is incomplete", pytrace=False)
    return Reference(out, json.loads((out / "manifest.json").read_text()))


@pytest.fixture(scope="session")
def mmseg_train_ref(mmseg_ref, tmp_path_factory) -> TrainReference:
    """mmseg_train_side.py's records, from the checkpoints of ``mmseg_ref``: written into ``SEGZOO_MMSEG_TRAIN_OUT``
    when set (and reused when complete there), else into a temporary folder."""
    given = os.environ.get("SEGZOO_MMSEG_TRAIN_OUT")
    out = Path(given) if given else tmp_path_factory.mktemp("mmseg-train-ref")
    if not _complete(out, "train_manifest.json"):
        _run_side(_reference_python(), out, TRAIN_SIDE_SCRIPT, ("--ref", str(mmseg_ref.out)))
        if not _complete(out, "train_manifest.json"):
            pytest.fail(f"{TRAIN_SIDE_SCRIPT.name} finished but {out}/train_manifest.json is incomplete", pytrace=False)
    return TrainReference(out, json.loads((out / "train_manifest.json").read_text()))


@pytest.fixture(scope="session")
def mmseg_test_loop(mmseg_ref: Reference) -> Reference:
    """``reference/mmseg_test_loop.py``'s output (``Runner.test()`` on a small ADE20K-layout folder): reused from
    ``SEGZOO_MMSEG_TEST_LOOP_OUT`` (default ``<mmseg_ref>/test_loop``) when complete, else run into it."""
    out = Path(os.environ.get("SEGZOO_MMSEG_TEST_LOOP_OUT") or mmseg_ref.out / "test_loop")
    if not _complete(out):
        _run_side(_reference_python(), out, TEST_LOOP_SCRIPT, ("--ref", str(mmseg_ref.out)))
        if not _complete(out):
            pytest.fail(f"{TEST_LOOP_SCRIPT.name} finished but {out}/manifest.json is incomplete", pytrace=False)
    return Reference(out, json.loads((out / "manifest.json").read_text()))


# --------------------------------------------------------------------------------------------------------------
# Measured values, printed as a table at the end of every run (pass or fail)

MEASURED: list[tuple[str, str, str]] = []


@pytest.fixture
def record(request):
    """``record(what, value)`` notes a measured number for the end-of-run table."""

    def _record(what: str, value: str) -> None:
        MEASURED.append((request.node.name, what, value))

    return _record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not MEASURED:
        return
    terminalreporter.section("segzoo vs mmsegmentation 1.2.2: measured")
    width = max(len(name) for name, _, _ in MEASURED)
    for name, what, value in MEASURED:
        terminalreporter.write_line(f"{name:<{width}}  {what}: {value}")
    report = os.environ.get("SEGZOO_PARITY_REPORT")
    if report:
        Path(report).write_text(json.dumps([{"test": n, "what": w, "value": v} for n, w, v in MEASURED], indent=1))


def pytest_collection_modifyitems(config, items):
    """All tests of one model run together (in definition order), so each model is loaded once."""
    order = {key: i for i, key in enumerate(MODELS)}

    def model_rank(item) -> int:
        callspec = getattr(item, "callspec", None)
        key = callspec.params.get("key") if callspec else None
        return order.get(key, -1)

    items.sort(key=model_rank)
