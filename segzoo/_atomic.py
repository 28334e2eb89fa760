"""Writing files so that no reader ever sees half of one: segzoo's one way, behind every file it writes for others to
read (downloads, the converted-checkpoint cache, saved models, ONNX and int8 exports, prepared datasets).

A file is written into a temporary folder of its own beside the target (``.<name>.<random>.partial``: a unique name,
so concurrent writers never share it; the same file system, so the final move is a rename) and moved into place
with ``os.replace`` once it is complete. A reader sees the old file or the new one; an error or Ctrl-C leaves
neither a half-written file nor the temporary folder behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "staging_folder"]


@contextmanager
def staging_folder(beside: str | Path, name: str = "") -> Iterator[Path]:
    """A new, uniquely named temporary folder inside ``beside`` (created if needed), removed with whatever it still
    holds when the block ends. ``name`` goes into the folder's name, for a person who sees one left by a killed
    process."""
    beside = Path(beside)
    beside.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=beside))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def atomic_write(target: str | Path) -> Iterator[Path]:
    """The path to write ``target`` to: ``target``'s name inside a :func:`staging_folder` beside it.

    When the block ends without an error, every file in that folder (the target, and what its writer put beside it,
    e.g. ONNX's external weights ``<name>.data``) is moved next to ``target`` with ``os.replace``, the target last.
    Otherwise nothing is moved. Either way the temporary folder is removed.
    """
    target = Path(target)
    with staging_folder(target.parent, target.name) as folder:
        yield folder / target.name
        for path in sorted(folder.iterdir(), key=lambda path: path.name == target.name):  # the target last
            os.replace(path, target.parent / path.name)
