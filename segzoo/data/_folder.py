"""A user's own dataset: an ``images/`` folder and a ``masks/`` folder of class-index PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzoo.data._base import FileSegmentationDataModule, missing_layout_error
from segzoo.data._dataset import reduce_zero_label_map
from segzoo.inference._predict import IMAGE_EXTENSIONS
from segzoo.inference._visualize import default_palette

FOLDER_LAYOUT = """
Either split folders:                       or split files listing names (paths under images/ without extension):
<data_root>/                                 <data_root>/
├── images/                                  ├── images/a.jpg, b.jpg, c.jpg ...
│   ├── train/a.jpg ...                      ├── masks/a.png, b.png, c.png ...
│   └── val/b.jpg ...                        ├── train.txt      (e.g. "a" and "b", one per line)
└── masks/                                   └── val.txt        (e.g. "c")
    ├── train/a.png ...
    └── val/b.png ...
Masks are single-channel PNGs with the image's name and size, holding class indices 0..num_classes-1 and 255 for
"ignore" (or 1..num_classes with 0 = unlabelled when reduce_zero_label=True). A test/ folder or test.txt is optional
(the val split is used for testing otherwise).
"""


def read_class_names(classes: Sequence[str] | str | Path, data_root: Path) -> list[str]:
    """Class names from a list, or from a text file (one name per line) given as a path, absolute or under data_root."""
    if not isinstance(classes, (str, Path)):
        names = [str(name) for name in classes]
    else:
        path = Path(classes).expanduser()
        if not path.is_file() and (data_root / path).is_file():
            path = data_root / path
        if not path.is_file():
            raise FileNotFoundError(
                f"Classes file '{classes}' not found (also looked under '{data_root}'). Pass a list of class names or "
                "the path of a text file with one name per line."
            )
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError("classes is empty; give at least one class name.")
    return names


def index_images(folder: Path) -> dict[str, Path]:
    """Image files under ``folder`` (recursively), keyed by their path relative to it without the extension."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return {p.relative_to(folder).with_suffix("").as_posix(): p for p in files}


class FolderDataModule(FileSegmentationDataModule):
    """Your own dataset: ``images/`` + ``masks/`` with the same names, split by subfolders or by split files.

    Split by ``images/{train,val}/`` and ``masks/{train,val}/`` subfolders when ``images/train`` exists, otherwise by
    ``train.txt`` / ``val.txt`` in ``data_root`` listing image names without extension (one per line). The mask of
    ``images/<split>/x/y.jpg`` is ``masks/<split>/x/y.png``.

    Args:
        data_root: Folder holding ``images/`` and ``masks/``.
        classes: Class names, or the path of a text file with one name per line (absolute or under data_root).
        reduce_zero_label: Treat mask value 0 as "ignore" and shift other labels down by one.
        crop_size: Training crop.
        scale: Base scale of the training rescale, e.g. ``(2048, 512)`` (short side 512 at ratio 1).
        eval_scale: Keep-ratio resize of validation images, ``None`` for full resolution.
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments.
    """

    dataset_name = "Folder dataset"

    def __init__(
        self,
        data_root: str | Path,
        classes: list[str] | str,
        reduce_zero_label: bool = False,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        eval_scale: tuple[int, int] | None = (2048, 512),
        **kwargs: Any,
    ):
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)
        if not self.data_root.is_dir():  # before the classes file, which is looked for in it
            what = "is a file, not a folder" if self.data_root.exists() else "does not exist"
            raise FileNotFoundError(
                f"{self.dataset_name}: data_root '{self.data_root}' {what}; give the folder that holds images/ and "
                "masks/"
            )
        self.names = read_class_names(classes, self.data_root)
        self.num_classes = len(self.names)
        self.reduce_zero_label = reduce_zero_label

    def _split_pairs(self, split: str) -> list[tuple[Path, Path]] | None:
        """(image, mask) paths of ``split``, or ``None`` if the data has no such split."""
        image_root, mask_root = self.data_root / "images", self.data_root / "masks"
        if not image_root.is_dir() or not mask_root.is_dir():
            missing = image_root if not image_root.is_dir() else mask_root
            raise missing_layout_error(
                self.dataset_name, self.data_root, FOLDER_LAYOUT, f"Missing folder: '{missing}'."
            )
        if (image_root / "train").is_dir():
            if not (image_root / split).is_dir():
                return None
            images, mask_dir = index_images(image_root / split), mask_root / split
        else:
            split_file = self.data_root / f"{split}.txt"
            if not split_file.is_file():
                if split == "test":
                    return None
                raise missing_layout_error(
                    self.dataset_name,
                    self.data_root,
                    FOLDER_LAYOUT,
                    f"Neither '{image_root / 'train'}' nor '{split_file}' exists.",
                )
            all_images = index_images(image_root)
            names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
            unknown = [name for name in names if name not in all_images]
            if unknown:
                raise FileNotFoundError(
                    f"{len(unknown)} name(s) in '{split_file}' have no image under '{image_root}', e.g. '{unknown[0]}' "
                    f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
                )
            images, mask_dir = {name: all_images[name] for name in names}, mask_root
        pairs = [(image, mask_dir / f"{key}.png") for key, image in images.items()]
        missing_masks = [mask for _, mask in pairs if not mask.is_file()]
        if missing_masks:
            raise FileNotFoundError(
                f"{len(missing_masks)} image(s) of split '{split}' have no mask, e.g. '{missing_masks[0]}' is missing."
            )
        return pairs

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray | None]:
        pairs = self._split_pairs(split)
        if pairs is None:  # no labelled test split: test on val
            pairs = self._split_pairs("val")
        if pairs is None:
            raise missing_layout_error(
                self.dataset_name,
                self.data_root,
                FOLDER_LAYOUT,
                f"Missing folder: '{self.data_root / 'images' / split}'.",
            )
        return pairs, reduce_zero_label_map() if self.reduce_zero_label else None

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return self.names, default_palette(self.num_classes)
