"""The package knows its layers: each module imports only modules of its own layer or below (at the top of the file
or inside a function alike), and no two modules import each other, directly or in a ring.

    base (errors, version, preprocessing, image files) -> models -> checkpoints -> inference (and the public API, and
    the torch-free runtime) -> training (Lightning, albumentations, wandb) and the demo page -> command line
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segzoo"

LAYERS = {  # module-name prefix -> layer; the longest matching prefix decides
    "segzoo._errors": 0,
    "segzoo._version": 0,
    "segzoo._preprocessing": 0,
    "segzoo._images": 0,
    "segzoo._datasets": 0,
    "segzoo._atomic": 0,
    "segzoo.models": 1,
    "segzoo.checkpoints": 2,
    "segzoo.inference": 3,
    "segzoo._api": 3,
    "segzoo.runtime": 3,
    "segzoo": 3,  # the package's public names (segzoo/__init__.py)
    "segzoo.training": 4,
    "segzoo.data": 4,
    "segzoo.demo": 4,
    "segzoo._cli": 5,
}
LAYER_NAMES = ["base", "models", "checkpoints", "inference", "training", "command line"]


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def segzoo_imports(path: Path) -> set[str]:
    """Every segzoo module ``path`` imports, anywhere in the file (``from segzoo.x import y`` counts as segzoo.x.y
    when that is a module, else segzoo.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "segzoo"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (segzoo uses absolute imports)"
            if node.module and node.module.split(".")[0] == "segzoo":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in MODULES else node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: segzoo_imports(path) - {name} for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert {"segzoo.models._registry", "segzoo.checkpoints._resolve", "segzoo.inference._predict", "segzoo._cli",
            "segzoo.training._module", "segzoo.data._base"} <= set(MODULES)
    for name in MODULES:
        assert 0 <= layer(name) < len(LAYER_NAMES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_its_layer_and_below(name):
    upward = sorted(target for target in GRAPH[name] if layer(target) > layer(name))
    assert not upward, (
        f"{name} ({LAYER_NAMES[layer(name)]}) imports "
        + ", ".join(f"{t} ({LAYER_NAMES[layer(t)]})" for t in upward)
    )


def test_no_import_cycles():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_checker_sees_upward_and_lazy_imports(tmp_path):
    """The checks above could fail: a lazy (in-function) upward import is found and judged upward."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from segzoo.training._module import SegmentationModule\n")
    assert "segzoo.training._module" in segzoo_imports(source)
    assert layer("segzoo.training._module") > layer("segzoo.models._registry")
