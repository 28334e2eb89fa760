"""Datasets, transforms and LightningDataModules for semantic segmentation.

DataModules: :class:`ADE20KDataModule`, :class:`CityscapesDataModule`, :class:`PascalContextDataModule`,
:class:`COCOStuffDataModule`, :class:`FolderDataModule` (your own data) and :class:`SyntheticDataModule` (generated
scenes, no files). Each exposes ``num_classes``, ``ignore_index`` (255), ``class_names`` and ``palette`` and takes
``mean``/``std`` on the 0-255 scale, so ``model.pretrained_cfg["mean"]`` / ``["std"]`` can be passed in.
"""

import importlib

# Imported on first use (PEP 562): ``segzoo.data.classes`` serves loading and predicting, which must not pay for
# Lightning and albumentations; ``from segzoo.data import X`` and LightningCLI's ``segzoo.data.X`` work as before.
_EXPORTS = {
    "ADE20KDataModule": "ade20k",
    "SegmentationDataModule": "base",
    "generate_palette": "base",
    "CITYSCAPES_LABEL_TO_TRAIN_ID": "cityscapes",
    "CityscapesDataModule": "cityscapes",
    "COCOStuffDataModule": "coco_stuff",
    "SegmentationDataset": "dataset",
    "read_image": "dataset",
    "read_mask": "dataset",
    "FolderDataModule": "folder",
    "PascalContextDataModule": "pascal_context",
    "SyntheticDataModule": "synthetic",
    "SyntheticSegmentationDataset": "synthetic",
    "IGNORE_INDEX": "transforms",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "CatMaxRatioRandomCrop": "transforms",
    "KeepRatioRescale": "transforms",
    "PhotoMetricDistortion": "transforms",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"segzoo.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'segzoo.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
