"""What each training recipe resolves to (``train.py fit --config <recipe> --print_config``), parsed once per test
session: the recipe tests (``training/test_configs.py``, ``training/test_train_cli.py``) read it from here, so the
47 recipes are parsed 47 times, not twice each.

The parsing is ``scripts/snapshot_configs.py``'s (which writes the snapshots under ``tests/assets/resolved_configs``).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from unittest import mock

import yaml

from support import REPO

_spec = importlib.util.spec_from_file_location("snapshot_configs", REPO / "scripts" / "snapshot_configs.py")
snapshot_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(snapshot_configs)

CONFIGS = snapshot_configs.CONFIGS  # configs/
SNAPSHOTS = snapshot_configs.SNAPSHOTS  # tests/assets/resolved_configs/
RECIPES = [p.relative_to(CONFIGS).as_posix() for p in snapshot_configs.recipes()]  # "segformer/segformer-b0-ade.yaml"


def resolve(recipe: Path | str, *extra_args: str, flag: str = "--config") -> dict:
    """The config ``fit --config <recipe> [extra_args] --print_config`` prints, parsed anew (``recipe``: a path or
    a YAML string; ``flag``: ``--config``, ``--config=`` or ``-c``)."""
    with mock.patch.object(sys, "argv", ["train.py"]):  # LightningCLI warns when pytest's arguments are in sys.argv
        return yaml.safe_load(snapshot_configs.resolve(recipe, *extra_args, flag=flag))


@functools.cache
def _printed(recipe: str) -> str:
    with mock.patch.object(sys, "argv", ["train.py"]):
        return snapshot_configs.resolve(CONFIGS / recipe)


def resolved_recipe(recipe: str) -> dict:
    """What ``configs/<recipe>`` resolves to, parsed once per session (a fresh dict each call: tests may change it)."""
    return yaml.safe_load(_printed(recipe))
