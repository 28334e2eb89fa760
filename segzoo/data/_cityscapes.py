"""Cityscapes (fine annotations), 19 evaluation classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from segzoo.data._base import FileSegmentationDataModule, load_class_names, masks_for_images, require_dirs
from segzoo.data._dataset import identity_label_map, label_map_from_dict

# labelId -> trainId for the 19 evaluated classes, from cityscapesScripts' labels.py; every other id -> 255.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

CITYSCAPES_LAYOUT = """
<data_root>/
├── leftImg8bit/
│   ├── train/<city>/<city>_<seq>_<frame>_leftImg8bit.png ...
│   └── val/<city>/<city>_<seq>_<frame>_leftImg8bit.png ...
└── gtFine/
    ├── train/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png ...      (or *_gtFine_labelTrainIds.png)
    └── val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png ...
"""
CITYSCAPES_HINT = (
    "Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com "
    "into a folder SRC and run `segzoo data prepare cityscapes SRC DST` (it unpacks them and writes the "
    "*_gtFine_labelTrainIds.png files; data_root DST)."
)


class CityscapesDataModule(FileSegmentationDataModule):
    """Cityscapes semantic segmentation with the 19 evaluation classes, mmsegmentation settings.

    Masks are ``*_gtFine_labelTrainIds.png`` when present for every image (already 0..18 / 255), otherwise
    ``*_gtFine_labelIds.png`` mapped with the official labelId -> trainId table. Training: random keep-ratio rescale
    of ``scale=(2048, 1024)`` by 0.5-2.0 and a 1024 x 1024 crop (SegFormer; SETR and Segmenter use 768).
    Evaluation at full resolution (``eval_scale=None``), meant for sliding-window inference. The test split is the
    validation split (test labels are not public).

    Args:
        data_root: Folder holding ``leftImg8bit`` and ``gtFine``.
        crop_size: Training crop.
        scale: Base scale of the training rescale.
        eval_scale: Keep-ratio resize of validation images, ``None`` for full resolution.
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments.
    """

    dataset_name = "Cityscapes"
    num_classes = 19
    split_dirs: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "val"}

    def __init__(
        self,
        data_root: str | Path,
        crop_size: int | tuple[int, int] = 1024,
        scale: tuple[int, int] = (2048, 1024),
        eval_scale: tuple[int, int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray]:
        folder = self.split_dirs[split]
        image_dir, mask_dir = self.data_root / "leftImg8bit" / folder, self.data_root / "gtFine" / folder
        require_dirs(self.dataset_name, self.data_root, [image_dir, mask_dir], CITYSCAPES_LAYOUT, CITYSCAPES_HINT)
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))

        def candidates(image: Path) -> list[Path]:
            prefix = mask_dir / image.parent.name / image.name.removesuffix("_leftImg8bit.png")
            return [Path(f"{prefix}_gtFine_labelTrainIds.png"), Path(f"{prefix}_gtFine_labelIds.png")]

        samples, kind = masks_for_images(images, candidates, self.dataset_name)
        label_map = identity_label_map() if kind == 0 else label_map_from_dict(CITYSCAPES_LABEL_TO_TRAIN_ID)
        return samples, label_map

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return load_class_names("cityscapes")
