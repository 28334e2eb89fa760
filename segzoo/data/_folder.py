"""A user's own dataset: an ``images/`` folder and a ``masks/`` folder of class-index PNGs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzoo._datasets import default_palette
from segzoo._images import IMAGE_EXTENSIONS
from segzoo.data._base import FileSegmentationDataModule, missing_layout_error
from segzoo.data._dataset import SegmentationDataset
from segzoo.data._files import (  # noqa: F401  (index_images and read_class_names are public here too)
    FOLDER_LAYOUT,
    find_split,
    folder_label_table,
    index_images,
    read_class_names,
    same_name_message,
)


class FolderDataModule(FileSegmentationDataModule):
    """Your own dataset: ``images/`` + ``masks/`` with the same names, split by subfolders or by split files.

    Split by ``images/{train,val}/`` and ``masks/{train,val}/`` subfolders when ``images/train`` exists, otherwise by
    ``train.txt`` / ``val.txt`` in ``data_root`` listing image names without extension (one per line). The mask of
    ``images/<split>/x/y.jpg`` is ``masks/<split>/x/y.png``. ``segzoo data check <data_root>`` reads every mask and
    prints the arguments below that the data needs.

    Args:
        data_root: Folder holding ``images/`` and ``masks/``.
        classes: Class names, or the path of a text file with one name per line (absolute or under data_root);
            ``None`` with ``num_classes`` (or ``colors``) names them ``class_0``, ``class_1``, ...
        reduce_zero_label: Treat mask value 0 as "ignore" and shift other labels down by one.
        crop_size: Training crop.
        scale: Base scale of the training rescale, e.g. ``(2048, 512)`` (short side 512 at ratio 1).
        eval_scale: Keep-ratio resize of validation images, ``None`` for full resolution.
        num_classes: Number of classes, when ``classes`` is not given (or to check its length).
        label_map: Mask value -> class index (or 255, ignore), applied before ``reduce_zero_label``; values it does not
            name keep their value. E.g. ``{255: 1}`` for binary masks stored as 0 / 255.
        colors: For RGB colour masks: the ``[r, g, b]`` colour of each class index, in order; pixels of any other
            colour are ignored (255).
        **kwargs: Other :class:`~segzoo.data.SegmentationDataModule` arguments.
    """

    dataset_name = "Folder dataset"

    def __init__(
        self,
        data_root: str | Path,
        classes: list[str] | str | None = None,
        reduce_zero_label: bool = False,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        eval_scale: tuple[int, int] | None = (2048, 512),
        num_classes: int | None = None,
        label_map: dict[int, int] | None = None,
        colors: list[list[int]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(data_root, crop_size=crop_size, scale=scale, eval_scale=eval_scale, **kwargs)
        if not self.data_root.is_dir():  # before the classes file, which is looked for in it
            what = "is a file, not a folder" if self.data_root.exists() else "does not exist"
            raise FileNotFoundError(
                f"{self.dataset_name}: data_root '{self.data_root}' {what}; give the folder that holds images/ and "
                "masks/"
            )
        self.colors = _check_colors(colors)
        names = read_class_names(classes, self.data_root) if classes is not None else None
        counts = {
            "classes": len(names) if names else None,
            "num_classes": num_classes,
            "colors": len(self.colors) if self.colors else None,
        }
        given = {key: count for key, count in counts.items() if count is not None}
        if not given:
            raise ValueError(
                f"{self.dataset_name}: give classes (names, or a text file with one name per line) or num_classes."
            )
        if len(set(given.values())) > 1:
            raise ValueError(
                f"{self.dataset_name}: the number of classes disagrees: "
                + ", ".join(f"{key} gives {count}" for key, count in given.items())
                + "; give one class name and one colour per class index."
            )
        self.num_classes = next(iter(given.values()))
        if not 0 < self.num_classes < 255:
            raise ValueError(f"num_classes must be from 1 to 254 (255 means ignore), got {self.num_classes}.")
        self.names = names or [f"class_{i}" for i in range(self.num_classes)]
        self.reduce_zero_label = reduce_zero_label
        self.label_map = _check_label_map(label_map)

    def _split_pairs(self, split: str) -> list[tuple[Path, Path]] | None:
        """(image, mask) paths of ``split``, or ``None`` if the data has no such split."""
        found = find_split(self.data_root, split)
        if found is None:
            image_root = self.data_root / "images"
            if split == "test" or (image_root / "train").is_dir():
                return None
            raise missing_layout_error(
                self.dataset_name,
                self.data_root,
                FOLDER_LAYOUT,
                f"Neither '{image_root / 'train'}' nor '{self.data_root / f'{split}.txt'}' exists.",
            )
        if found.unknown:
            raise FileNotFoundError(
                f"{len(found.unknown)} name(s) in '{self.data_root / f'{split}.txt'}' have no image under "
                f"'{self.data_root / 'images'}', e.g. '{found.unknown[0]}' (looked for {', '.join(IMAGE_EXTENSIONS)})."
            )
        if found.same_name:
            raise ValueError(
                f"{self.dataset_name}, split '{split}': "
                + same_name_message(found.same_name[0], len(found.same_name))
                + "."
            )
        broken = [image for image in found.images.values() if not image.exists()]
        if broken:
            raise FileNotFoundError(
                f"{len(broken)} image(s) of split '{split}' are symbolic links to nothing, e.g. '{broken[0]}' -> "
                f"'{os.readlink(broken[0])}'; fix or remove the links."
            )
        pairs = [(image, found.mask_dir / f"{key}.png") for key, image in found.images.items()]
        missing_masks = [mask for _, mask in pairs if not mask.is_file()]
        if missing_masks:
            what = "is a symbolic link to nothing" if missing_masks[0].is_symlink() else "is missing"
            raise FileNotFoundError(
                f"{len(missing_masks)} image(s) of split '{split}' have no mask, e.g. '{missing_masks[0]}' {what}."
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
        return pairs, folder_label_table(self.label_map, self.reduce_zero_label)

    def build_dataset(self, split: str, transform: Any) -> SegmentationDataset:
        samples, table = self.find_samples(split)
        if not samples:
            raise FileNotFoundError(
                f"{self.dataset_name}: no images found for split '{split}' under '{self.data_root}'."
            )
        return SegmentationDataset(samples, self.num_classes, transform, table, self.ignore_index, colors=self.colors)

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        palette = [tuple(colour) for colour in self.colors] if self.colors else default_palette(self.num_classes)
        return self.names, palette


def _check_label_map(label_map: Mapping[int, int] | None) -> dict[int, int] | None:
    if label_map is None:
        return None
    checked = {}
    for source, target in label_map.items():
        if not (0 <= int(source) <= 255 and 0 <= int(target) <= 255):
            raise ValueError(
                f"label_map maps 8-bit mask values to class indices (or 255 = ignore); {source}: {target} is outside "
                "0-255."
            )
        checked[int(source)] = int(target)
    return checked


def _check_colors(colors: Sequence[Sequence[int]] | None) -> list[tuple[int, int, int]] | None:
    if colors is None:
        return None
    checked = []
    for colour in colors:
        if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
            raise ValueError(f"colors holds one [r, g, b] per class, each from 0 to 255; got {list(colour)}.")
        checked.append(tuple(int(c) for c in colour))
    repeated = sorted({colour for colour in checked if checked.count(colour) > 1})
    if repeated:
        raise ValueError(f"colors gives the colour {list(repeated[0])} to several classes; give each class its own.")
    if not checked:
        raise ValueError("colors is empty; give the [r, g, b] colour of each class.")
    return checked
