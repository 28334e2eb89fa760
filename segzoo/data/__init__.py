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

import os
from typing import TYPE_CHECKING

from segzoo._lazy import lazy_names

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
    "ADE20KDataModule": "segzoo.data._ade20k",
    "SegmentationDataModule": "segzoo.data._base",
    "CITYSCAPES_LABEL_TO_TRAIN_ID": "segzoo.data._cityscapes",
    "CityscapesDataModule": "segzoo.data._cityscapes",
    "COCOStuffDataModule": "segzoo.data._coco_stuff",
    "SegmentationDataset": "segzoo.data._dataset",
    "collate_eval": "segzoo.data._dataset",
    "read_image": "segzoo.data._dataset",
    "read_mask": "segzoo.data._dataset",
    "IGNORE_INDEX": "segzoo.data._files",
    "FolderDataModule": "segzoo.data._folder",
    "PascalContextDataModule": "segzoo.data._pascal_context",
    "SyntheticDataModule": "segzoo.data._synthetic",
    "SyntheticSegmentationDataset": "segzoo.data._synthetic",
    "IMAGENET_MEAN": "segzoo.data._transforms",
    "IMAGENET_STD": "segzoo.data._transforms",
    "CatMaxRatioRandomCrop": "segzoo.data._transforms",
    "KeepRatioRescale": "segzoo.data._transforms",
    "PhotoMetricDistortion": "segzoo.data._transforms",
    "build_eval_transform": "segzoo.data._transforms",
    "build_train_transform": "segzoo.data._transforms",
}

# Names that moved to segzoo.tools (the command line's layer): each still works here, with a FutureWarning. Resolved by
# name at call time, so segzoo.data imports nothing of the layer above it.
_MOVED = {
    name: ("segzoo.tools", f"segzoo.tools.{name}")
    for name in ("DatasetReport", "PrepareReport", "check_dataset", "prepare_dataset")
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, moved=_MOVED)


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
