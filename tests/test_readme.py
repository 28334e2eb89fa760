"""The README's tables of architectures and checkpoints are what scripts/arch_table.py writes from the registry and
the checkpoint table; its layout table names every file of the package."""

import importlib.util
import re
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


def test_readme_layout_names_every_file_of_the_package_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## How the code is laid out") : readme.index("## Development")]
    table = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    named = [name for line in table for name in re.findall(r"`([\w/.]+\.(?:py|md|html|yaml))`", line.split(" | ")[1])]
    package = ROOT / "segzoo"
    files = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".md", ".html", ".yaml")
        and p.name != "__init__.py"
        and "__pycache__" not in p.parts
    }
    assert len(named) == len(set(named)), "a file is named twice"
    assert set(named) == files, f"missing: {sorted(files - set(named))}; gone: {sorted(set(named) - files)}"
