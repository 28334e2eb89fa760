"""Writes what every training recipe resolves to (``train.py fit --config <recipe> --print_config``) under
``tests/assets/resolved_configs/``, mirroring ``configs/``. tests/training/test_configs.py checks that the recipes
still resolve to these values.

    python scripts/snapshot_configs.py

Run it only when a recipe or a default is meant to change (then review the diff of the snapshots): the snapshots
are the record of what the recipes train.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SNAPSHOTS = REPO / "tests" / "assets" / "resolved_configs"


def recipes() -> list[Path]:
    """Every runnable recipe: the YAML files under configs/ except the bases they build on (configs/_base/)."""
    return sorted(p for p in CONFIGS.rglob("*.yaml") if "_base" not in p.relative_to(CONFIGS).parts)


def resolve(recipe: Path | str, *extra_args: str, flag: str = "--config") -> str:
    """The YAML that ``fit --config <recipe> [extra_args] --print_config`` prints (the config LightningCLI would
    run); ``flag="--config="`` passes the recipe as ``--config=<recipe>``."""
    from segzoo.training import cli_main

    config_args = [flag + str(recipe)] if flag.endswith("=") else [flag, str(recipe)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli_main(["fit", *config_args, *extra_args, "--print_config"])
        except SystemExit as exit_info:  # --print_config exits after printing
            if exit_info.code not in (0, None):
                raise RuntimeError(f"{recipe}: --print_config exited with status {exit_info.code}") from None
    return out.getvalue()


def source_commit() -> str:
    """The commit the recipes were read at, marked when configs/ had uncommitted changes."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "configs"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return commit + (" (with uncommitted changes in configs/)" if dirty else "")


def main() -> None:
    sys.argv = sys.argv[:1]  # LightningCLI warns when the script's own arguments are in sys.argv next to args
    header = (
        "# What `train.py fit --config {recipe} --print_config` printed,\n"
        f"# recipes at commit {source_commit()}.\n"
        "# Written by scripts/snapshot_configs.py, checked by tests/training/test_configs.py: do not edit by hand.\n"
    )
    for recipe in recipes():
        relative = recipe.relative_to(CONFIGS)
        target = SNAPSHOTS / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(header.format(recipe=f"configs/{relative.as_posix()}") + resolve(recipe))
        print(f"{target.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
