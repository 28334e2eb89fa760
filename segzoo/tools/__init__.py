"""The command line's dataset tools, beside it at the top layer: ``segzoo data check`` (:func:`check_dataset`: what a
folder dataset's masks hold, and the FolderDataModule settings to train it) and ``segzoo data prepare``
(:func:`prepare_dataset`: the archives the dataset sites distribute -> the layout a DataModule reads). They read data
the way :mod:`segzoo.data` does (its file rules and mask reader), which knows nothing of them.

Each name imports its module when first used (PEP 562): :func:`check_dataset` needs neither Lightning nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segzoo._lazy import lazy_names

if TYPE_CHECKING:
    from segzoo.tools._doctor import DatasetReport, check_dataset
    from segzoo.tools._prepare import PrepareReport, prepare_dataset

_LAZY = {  # public name -> the module that defines it
    "DatasetReport": "segzoo.tools._doctor",
    "check_dataset": "segzoo.tools._doctor",
    "PrepareReport": "segzoo.tools._prepare",
    "prepare_dataset": "segzoo.tools._prepare",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = ["DatasetReport", "PrepareReport", "check_dataset", "prepare_dataset"]
