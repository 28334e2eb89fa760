"""The README's tables of architectures and checkpoints are what scripts/arch_table.py writes from the registry and
the checkpoint table."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds every architecture to count its parameters
def test_readme_architecture_table_is_current():
    spec = importlib.util.spec_from_file_location("arch_table", ROOT / "scripts" / "arch_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    assert module.arch_table() in readme, "run python scripts/arch_table.py and update README"
    assert module.checkpoint_table() in readme, "run python scripts/arch_table.py and update README"
