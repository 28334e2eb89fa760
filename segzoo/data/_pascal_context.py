"""PASCAL Context, 59 or 60 classes, in mmsegmentation's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from segzoo.data._base import FileSegmentationDataModule, load_class_names, masks_for_images, require_dirs
from segzoo.data._dataset import identity_label_map, reduce_zero_label_map

PASCAL_CONTEXT_LAYOUT = """
<data_root>/                      (the folder holding VOCdevkit, VOCdevkit itself, or VOC2010)
└── VOCdevkit/
    └── VOC2010/
        ├── JPEGImages/2008_000002.jpg ...
        ├── SegmentationClassContext/2008_000002.png ...
        └── ImageSets/
            └── SegmentationContext/
                ├── train.txt      (one image name per line, without extension)
                └── val.txt
"""
PASCAL_CONTEXT_HINT = (
    "Download VOCtrainval_03-May-2010.tar and trainval_merged.json, then build SegmentationClassContext and the "
    "split files with `segzoo data prepare pascal-context SRC DST` (SRC: the folder holding both)."
)


class PascalContextDataModule(FileSegmentationDataModule):
    """PASCAL Context with 60 classes (background kept as class 0) or 59 classes (background ignored).

    The masks in ``SegmentationClassContext`` hold 0 for background and 1..59 for the other classes. With
    ``num_classes=60`` they are used as they are; with ``num_classes=59`` ``reduce_zero_label`` maps 0 -> 255,
    k -> k - 1. SETR and Segmenter report the 60-class setting. Training: random keep-ratio rescale of
    ``scale=(520, 520)`` (long side 520) by 0.5-2.0 and a 480 x 480 crop; evaluation resize at ``(520, 520)``.
    Use ``scale=(4096, 520)`` to make the short side 520 instead. The test split is the validation split.

    Args:
        data_root: Folder holding ``VOCdevkit`` (or ``VOCdevkit`` or ``VOC2010`` itself).
        num_classes: 60 (with background) or 59 (without).
        crop_size: Training crop.
        scale: Base scale of the training rescale.
        eval_scale: Keep-ratio resize of validation images.
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments.
    """

    dataset_name = "PASCAL Context"
    split_files: ClassVar[dict[str, str]] = {"train": "train.txt", "val": "val.txt", "test": "val.txt"}

    def __init__(
        self,
        data_root: str | Path,
        num_classes: Literal[59, 60] = 60,
        crop_size: int | tuple[int, int] = 480,
        scale: tuple[int, int] = (520, 520),
        eval_scale: tuple[int, int] | None = (520, 520),
        **kwargs: Any,
    ):
        if num_classes not in (59, 60):
            raise ValueError(f"PASCAL Context has 59 or 60 classes (without / with background), got {num_classes}.")
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)
        self.num_classes = num_classes

    @property
    def root(self) -> Path:
        """The ``VOC2010`` folder."""
        for candidate in (self.data_root / "VOCdevkit" / "VOC2010", self.data_root / "VOC2010"):
            if candidate.is_dir():
                return candidate
        return self.data_root

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray]:
        root = self.root
        image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClassContext"
        split_dir = root / "ImageSets" / "SegmentationContext"
        require_dirs(
            self.dataset_name,
            self.data_root,
            [image_dir, mask_dir, split_dir],
            PASCAL_CONTEXT_LAYOUT,
            PASCAL_CONTEXT_HINT,
        )
        split_file = split_dir / self.split_files[split]
        if not split_file.is_file():
            raise FileNotFoundError(
                f"{self.dataset_name}: split file '{split_file}' not found. Expected this layout:\n"
                f"{PASCAL_CONTEXT_LAYOUT.strip(chr(10))}"
            )
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        images = [image_dir / f"{name}.jpg" for name in names]
        missing = [image for image in images if not image.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.dataset_name}: {len(missing)} image(s) listed in '{split_file}' are missing, "
                f"e.g. '{missing[0]}'."
            )
        samples, _ = masks_for_images(images, lambda image: [mask_dir / f"{image.stem}.png"], self.dataset_name)
        return samples, reduce_zero_label_map() if self.num_classes == 59 else identity_label_map()

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return load_class_names(f"pascal-context-{self.num_classes}")
