"""The package keeps its layers: pyproject's import-linter contracts (``[tool.importlinter]``: each module imports only
its own layer and those below, lazy imports included; every top-level module has a layer; no import cycles), which CI
also runs as ``lint-imports``, and the rule import-linter cannot express: which modules import the package root.

    base (errors, version, preprocessing, image files, datasets, atomic writes) -> models -> checkpoints -> inference
    (and the public API, and the torch-free runtime) -> training, data (Lightning, albumentations, wandb) and the demo
    page -> command line
"""

from __future__ import annotations

import grimp
from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

from support import REPO

# The layers that may import the package root ``segzoo`` (its public names sit at the inference layer).
ROOT_IMPORTERS = ("segzoo.inference", "segzoo._api", "segzoo.runtime", "segzoo.training", "segzoo.data",
                  "segzoo.demo", "segzoo._cli")


def test_the_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(REPO)
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True) == EXIT_STATUS_SUCCESS, (
        "an import breaks a layer contract: run `lint-imports` for the chain"
    )


def test_only_the_inference_layer_and_above_import_the_package_root():
    importers = grimp.build_graph("segzoo", cache_dir=None).find_modules_that_directly_import("segzoo")
    below = sorted(m for m in importers if not any(m == p or m.startswith(p + ".") for p in ROOT_IMPORTERS))
    assert not below, f"{', '.join(below)} import the package root segzoo, which sits above their layer"
