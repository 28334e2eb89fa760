"""The class names and palettes segzoo gives each dataset (``segzoo._datasets``: label PNGs, overlays,
model cards) are mmsegmentation 1.2.2's own: the ``METAINFO`` of its dataset classes, read from mmseg's source files
in the reference environment (literals, so mmseg is not imported).

One deliberate difference: mmseg's ADE20K names class 7 ``'bed '``, with a trailing space; segzoo's name is ``'bed'``.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from segzoo._datasets import DATASETS

REPO = Path(__file__).resolve().parents[1]
SETUP_HINT = "build it with `bash reference/setup.sh` (or point SEGZOO_MMSEG_PYTHON at a python that has mmseg 1.2.2)"

# segzoo's dataset key -> (mmseg's module under mmseg/datasets, its dataset class)
MMSEG_DATASETS = {
    "ade20k": ("ade.py", "ADE20KDataset"),
    "cityscapes": ("cityscapes.py", "CityscapesDataset"),
    "pascal-context-59": ("pascal_context.py", "PascalContextDataset59"),
    "pascal-context-60": ("pascal_context.py", "PascalContextDataset"),
    "coco-stuff-164k": ("coco_stuff.py", "COCOStuffDataset"),
}


@pytest.fixture(scope="module")
def mmseg_datasets() -> Path:
    """The ``mmseg/datasets`` folder of the reference environment (found without importing mmseg)."""
    python = os.environ.get("SEGZOO_MMSEG_PYTHON", str(REPO / ".venv-mmseg" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(
            f"the mmsegmentation reference environment is missing ({python} not found): {SETUP_HINT}", pytrace=False
        )
    found = subprocess.run(
        [python, "-c", "import importlib.util; print(importlib.util.find_spec('mmseg').submodule_search_locations[0])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(found.stdout.strip()) / "datasets"


def metainfo(source: Path, class_name: str) -> dict:
    """The ``METAINFO = dict(classes=..., palette=...)`` literal of ``class_name`` in ``source``."""
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == "METAINFO":
                    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in statement.value.keywords}
    raise AssertionError(f"no METAINFO in {class_name} ({source})")


@pytest.mark.parametrize("dataset", sorted(MMSEG_DATASETS))
def test_class_names_and_palette_are_mmsegs(dataset, mmseg_datasets):
    module, class_name = MMSEG_DATASETS[dataset]
    mmseg = metainfo(mmseg_datasets / module, class_name)
    names, palette = DATASETS[dataset]
    assert names == tuple(name.strip() for name in mmseg["classes"])  # ADE20K's 'bed ' stripped
    assert palette == tuple(tuple(colour) for colour in mmseg["palette"])


def test_every_dataset_of_segzoo_is_compared():
    assert sorted(DATASETS) == sorted(MMSEG_DATASETS)
