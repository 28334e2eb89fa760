"""Layer 4, the data side of training: datasets, albumentations transforms and LightningDataModules.

DataModules: :class:`ADE20KDataModule`, :class:`CityscapesDataModule`, :class:`PascalContextDataModule`,
:class:`COCOStuffDataModule`, :class:`FolderDataModule` (your own data) and :class:`SyntheticDataModule` (generated
scenes, no files). Each exposes ``num_classes``, ``ignore_index`` (255), ``class_names`` and ``palette`` and takes
``mean``/``std`` on the 0-255 scale, so ``model.pretrained_cfg["mean"]`` / ``["std"]`` can be passed in. Validation
and test items hold the image as read and the mask at its own size: the model's input is made by a test pipeline
(:class:`segzoo.EvalProtocol`) when they are scored. :func:`check_dataset`
(``segzoo data check``) reads a folder dataset's masks and recommends the FolderDataModule settings to train it.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would otherwise look for updates online

from segzoo.data._ade20k import ADE20KDataModule  # noqa: E402
from segzoo.data._base import SegmentationDataModule  # noqa: E402
from segzoo.data._cityscapes import CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesDataModule  # noqa: E402
from segzoo.data._coco_stuff import COCOStuffDataModule  # noqa: E402
from segzoo.data._dataset import SegmentationDataset, collate_eval, read_image, read_mask  # noqa: E402
from segzoo.data._doctor import DatasetReport, check_dataset  # noqa: E402
from segzoo.data._folder import FolderDataModule  # noqa: E402
from segzoo.data._pascal_context import PascalContextDataModule  # noqa: E402
from segzoo.data._prepare import PrepareReport, prepare_dataset  # noqa: E402
from segzoo.data._synthetic import SyntheticDataModule, SyntheticSegmentationDataset  # noqa: E402
from segzoo.data._transforms import (  # noqa: E402
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CatMaxRatioRandomCrop,
    KeepRatioRescale,
    PhotoMetricDistortion,
    build_eval_transform,
    build_train_transform,
)

__all__ = [
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ADE20KDataModule",
    "COCOStuffDataModule",
    "CatMaxRatioRandomCrop",
    "CityscapesDataModule",
    "DatasetReport",
    "FolderDataModule",
    "KeepRatioRescale",
    "PascalContextDataModule",
    "PhotoMetricDistortion",
    "PrepareReport",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "SyntheticSegmentationDataset",
    "build_eval_transform",
    "build_train_transform",
    "check_dataset",
    "collate_eval",
    "prepare_dataset",
    "read_image",
    "read_mask",
]
