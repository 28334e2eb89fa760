"""Layer 4, the data side of training: datasets, albumentations transforms and LightningDataModules.

DataModules: :class:`ADE20KDataModule`, :class:`CityscapesDataModule`, :class:`PascalContextDataModule`,
:class:`COCOStuffDataModule`, :class:`FolderDataModule` (your own data) and :class:`SyntheticDataModule` (generated
scenes, no files). Each exposes ``num_classes``, ``ignore_index`` (255), ``class_names`` and ``palette`` and takes
``mean``/``std`` on the 0-255 scale, so ``model.pretrained_cfg["mean"]`` / ``["std"]`` can be passed in. Validation
and test items hold the image as read and the mask at its own size: the model's input is made by a test pipeline
(:class:`segzoo.EvalProtocol`) when they are scored. The command line's dataset tools (``segzoo data check`` and
``prepare``) are :mod:`segzoo.tools`.

Each name imports its module when first used (PEP 562): the DataModules bring Lightning and albumentations with them.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import TYPE_CHECKING, Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would otherwise look for updates online

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from segzoo.data._ade20k import ADE20KDataModule
    from segzoo.data._base import SegmentationDataModule
    from segzoo.data._cityscapes import CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesDataModule
    from segzoo.data._coco_stuff import COCOStuffDataModule
    from segzoo.data._dataset import SegmentationDataset, collate_eval, read_image, read_mask
    from segzoo.data._files import IGNORE_INDEX
    from segzoo.data._folder import FolderDataModule
    from segzoo.data._pascal_context import PascalContextDataModule
    from segzoo.data._synthetic import SyntheticDataModule, SyntheticSegmentationDataset
    from segzoo.data._transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        CatMaxRatioRandomCrop,
        KeepRatioRescale,
        PhotoMetricDistortion,
        build_eval_transform,
        build_train_transform,
    )

_LAZY = {  # public name -> the module that defines it
    "ADE20KDataModule": "_ade20k",
    "SegmentationDataModule": "_base",
    "CITYSCAPES_LABEL_TO_TRAIN_ID": "_cityscapes",
    "CityscapesDataModule": "_cityscapes",
    "COCOStuffDataModule": "_coco_stuff",
    "SegmentationDataset": "_dataset",
    "collate_eval": "_dataset",
    "read_image": "_dataset",
    "read_mask": "_dataset",
    "IGNORE_INDEX": "_files",
    "FolderDataModule": "_folder",
    "PascalContextDataModule": "_pascal_context",
    "SyntheticDataModule": "_synthetic",
    "SyntheticSegmentationDataset": "_synthetic",
    "IMAGENET_MEAN": "_transforms",
    "IMAGENET_STD": "_transforms",
    "CatMaxRatioRandomCrop": "_transforms",
    "KeepRatioRescale": "_transforms",
    "PhotoMetricDistortion": "_transforms",
    "build_eval_transform": "_transforms",
    "build_train_transform": "_transforms",
}

# Names that moved to segzoo.tools (the command line's layer): each still works here, with a FutureWarning. Resolved by
# name at call time, so segzoo.data imports nothing of the layer above it.
_MOVED = {"DatasetReport", "PrepareReport", "check_dataset", "prepare_dataset"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"segzoo.data.{name} moved: use segzoo.tools.{name}", FutureWarning, stacklevel=2)
        return getattr(importlib.import_module("segzoo.tools"), name)
    if name not in _LAZY:
        raise AttributeError(f"module 'segzoo.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"segzoo.data.{_LAZY[name]}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ADE20KDataModule",
    "COCOStuffDataModule",
    "CatMaxRatioRandomCrop",
    "CityscapesDataModule",
    "FolderDataModule",
    "KeepRatioRescale",
    "PascalContextDataModule",
    "PhotoMetricDistortion",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "SyntheticSegmentationDataset",
    "build_eval_transform",
    "build_train_transform",
    "collate_eval",
    "read_image",
    "read_mask",
]
