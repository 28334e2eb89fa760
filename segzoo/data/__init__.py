"""Datasets, transforms and LightningDataModules for semantic segmentation.

DataModules: :class:`ADE20KDataModule`, :class:`CityscapesDataModule`, :class:`PascalContextDataModule`,
:class:`COCOStuffDataModule`, :class:`FolderDataModule` (your own data) and :class:`SyntheticDataModule` (generated
scenes, no files). Each exposes ``num_classes``, ``ignore_index`` (255), ``class_names`` and ``palette`` and takes
``mean``/``std`` on the 0-255 scale, so ``model.pretrained_cfg["mean"]`` / ``["std"]`` can be passed in.
"""

from segzoo.data.ade20k import ADE20KDataModule
from segzoo.data.base import SegmentationDataModule, generate_palette
from segzoo.data.cityscapes import CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesDataModule
from segzoo.data.coco_stuff import COCOStuffDataModule
from segzoo.data.dataset import SegmentationDataset, read_image, read_mask
from segzoo.data.folder import FolderDataModule
from segzoo.data.pascal_context import PascalContextDataModule
from segzoo.data.synthetic import SyntheticDataModule, SyntheticSegmentationDataset
from segzoo.data.transforms import (
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
    "generate_palette",
    "read_image",
    "read_mask",
]
