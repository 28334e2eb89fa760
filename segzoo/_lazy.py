"""Public names imported when first used (PEP 562), so that importing a package imports none of its heavy modules:
the one ``__getattr__`` / ``__dir__`` pair behind ``segzoo``, ``segzoo.inference``, ``segzoo.data`` and
``segzoo.tools``."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str,
    names: Mapping[str, str],
    submodules: Iterable[str] = (),
    moved: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's name (``__name__``).
        names: Public name -> the module that defines it, imported at the name's first use; the value is then kept
            in the package, so later accesses are plain attributes.
        submodules: Subpackages reachable as attributes (``segzoo.training``), imported at first use.
        moved: Old public name -> (the module that defines it now, what to use instead): still resolved, with a
            FutureWarning, and not kept, so every use warns.
    """
    namespace = sys.modules[package].__dict__
    submodules, moved = tuple(submodules), dict(moved or {})

    def __getattr__(name: str) -> Any:
        if name in moved:
            module, instead = moved[name]
            warnings.warn(f"{package}.{name} moved: use {instead}", FutureWarning, stacklevel=2)
            return getattr(importlib.import_module(module), name)
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names, *submodules})

    return __getattr__, __dir__
