"""COCO-Stuff 164k, 171 classes, in mmsegmentation's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from segzoo.data._base import FileSegmentationDataModule, load_class_names, masks_for_images, require_dirs
from segzoo.data._dataset import identity_label_map, label_map_from_dict

# The raw stuffthingmaps PNGs store COCO category id - 1 (0..181); these 11 ids have no category.
_UNUSED_RAW_IDS = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}
# Raw id -> train id 0..170 (the same table as mmsegmentation's coco_stuff164k converter).
COCO_STUFF_RAW_TO_TRAIN_ID = {
    raw: train_id for train_id, raw in enumerate(r for r in range(182) if r not in _UNUSED_RAW_IDS)
}

COCO_STUFF_LAYOUT = """
<data_root>/
├── images/
│   ├── train2017/000000000009.jpg ...
│   └── val2017/000000000139.jpg ...
└── annotations/
    ├── train2017/000000000009_labelTrainIds.png ...   (or the raw 000000000009.png from stuffthingmaps)
    └── val2017/000000000139_labelTrainIds.png ...
"""
COCO_STUFF_HINT = (
    "Put train2017.zip, val2017.zip and stuffthingmaps_trainval2017.zip in one folder SRC and run "
    "`segzoo data prepare coco-stuff SRC DST`: it unpacks them and writes the *_labelTrainIds.png files."
)


class COCOStuffDataModule(FileSegmentationDataModule):
    """COCO-Stuff 164k (80 thing + 91 stuff = 171 classes), mmsegmentation settings.

    Masks are ``*_labelTrainIds.png`` (already 0..170, 255 = ignore) when present for every image, otherwise the raw
    stuffthingmaps ``<id>.png`` mapped to train ids. Training: random keep-ratio rescale of ``scale=(2048, 512)`` by
    0.5-2.0 and a 512 x 512 crop; evaluation with short side 512. The test split is ``val2017``.

    Args:
        data_root: Folder holding ``images`` and ``annotations``.
        crop_size: Training crop.
        scale: Base scale of the training rescale.
        eval_scale: Keep-ratio resize of validation images.
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments.
    """

    dataset_name = "COCO-Stuff 164k"
    num_classes = 171
    split_dirs: ClassVar[dict[str, str]] = {"train": "train2017", "val": "val2017", "test": "val2017"}

    def __init__(
        self,
        data_root: str | Path,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        eval_scale: tuple[int, int] | None = (2048, 512),
        **kwargs: Any,
    ):
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray]:
        folder = self.split_dirs[split]
        image_dir, mask_dir = self.data_root / "images" / folder, self.data_root / "annotations" / folder
        require_dirs(self.dataset_name, self.data_root, [image_dir, mask_dir], COCO_STUFF_LAYOUT, COCO_STUFF_HINT)
        images = sorted(image_dir.glob("*.jpg"))

        def candidates(image: Path) -> list[Path]:
            return [mask_dir / f"{image.stem}_labelTrainIds.png", mask_dir / f"{image.stem}.png"]

        samples, kind = masks_for_images(images, candidates, self.dataset_name)
        return samples, identity_label_map() if kind == 0 else label_map_from_dict(COCO_STUFF_RAW_TO_TRAIN_ID)

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return load_class_names("coco-stuff-164k")
