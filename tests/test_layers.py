"""The package keeps its layers: pyproject's import-linter contracts (``[tool.importlinter]``: each module imports only
its own layer and those below, lazy imports included; every top-level module has a layer; no import cycles), which CI
also runs as ``lint-imports``, and the rule import-linter cannot express: which modules import the package root.

    base (errors, version, preprocessing, image files, datasets, atomic writes, model config) -> models -> checkpoints
    -> inference (and the public API, and the torch-free runtime) -> training, data (Lightning, albumentations, wandb)
    and the demo page -> command line
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

from support import REPO

# The layers that may import the package root ``segzoo`` (its public names sit at the inference layer).
ROOT_IMPORTERS = (
    "segzoo.inference",
    "segzoo._api",
    "segzoo.runtime",
    "segzoo.training",
    "segzoo.data",
    "segzoo.demo",
    "segzoo._cli",
    "segzoo.tools",
)


def test_the_import_contracts_hold():
    # in its own process: import-linter configures logging with dictConfig, which would silence this process's loggers
    lint_imports = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_only_the_inference_layer_and_above_import_the_package_root():
    importers = grimp.build_graph("segzoo", cache_dir=None).find_modules_that_directly_import("segzoo")
    below = sorted(m for m in importers if not any(m == p or m.startswith(p + ".") for p in ROOT_IMPORTERS))
    assert not below, f"{', '.join(below)} import the package root segzoo, which sits above their layer"
