"""ADE20K (SceneParsing / ADEChallengeData2016), 150 classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from segzoo.data._base import FileSegmentationDataModule, load_class_names, masks_for_images, require_dirs
from segzoo.data._dataset import reduce_zero_label_map

ADE20K_LAYOUT = """
<data_root>/                      (the folder holding ADEChallengeData2016, or ADEChallengeData2016 itself)
└── ADEChallengeData2016/
    ├── images/
    │   ├── training/ADE_train_00000001.jpg ...
    │   └── validation/ADE_val_00000001.jpg ...
    └── annotations/
        ├── training/ADE_train_00000001.png ...
        └── validation/ADE_val_00000001.png ...
"""
ADE20K_HINT = "Download and unzip http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip."


class ADE20KDataModule(FileSegmentationDataModule):
    """ADE20K scene parsing (150 classes), mmsegmentation settings.

    Masks store 0 for "other" and 1..150 for classes; ``reduce_zero_label`` maps 0 -> 255 (ignored), k -> k - 1.
    Training: random keep-ratio rescale of ``scale=(2048, 512)`` by 0.5-2.0, 512 x 512 crop. Evaluation: short side
    to 512 (long side at most 2048). The test split is the validation split (test labels are not public).

    Args:
        data_root: Folder holding ``ADEChallengeData2016`` (or that folder itself).
        crop_size: Training crop; 640 for the largest models.
        scale: Base scale of the training rescale.
        eval_scale: Keep-ratio resize of validation images.
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments (``batch_size``, ``num_workers``,
            ``mean``, ``std``, ``ratio_range``, ``cat_max_ratio``, ...).
    """

    dataset_name = "ADE20K"
    num_classes = 150
    split_dirs: ClassVar[dict[str, str]] = {"train": "training", "val": "validation", "test": "validation"}

    def __init__(
        self,
        data_root: str | Path,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        eval_scale: tuple[int, int] | None = (2048, 512),
        **kwargs: Any,
    ):
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)

    @property
    def root(self) -> Path:
        """The ``ADEChallengeData2016`` folder."""
        nested = self.data_root / "ADEChallengeData2016"
        return nested if nested.is_dir() else self.data_root

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray]:
        folder = self.split_dirs[split]
        image_dir, mask_dir = self.root / "images" / folder, self.root / "annotations" / folder
        require_dirs(self.dataset_name, self.data_root, [image_dir, mask_dir], ADE20K_LAYOUT, ADE20K_HINT)
        images = sorted(image_dir.glob("*.jpg"))
        samples, _ = masks_for_images(images, lambda image: [mask_dir / f"{image.stem}.png"], self.dataset_name)
        return samples, reduce_zero_label_map()

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return load_class_names("ade20k")
