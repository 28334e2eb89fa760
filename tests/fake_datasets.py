"""Writers of tiny fake datasets in the official folder layouts, for tests of segzoo.data (and anyone else's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 40, 60


def stripes_mask(values: Sequence[int], height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A ``uint8`` mask of vertical stripes, one per value, so that every value is present."""
    columns = np.array_split(np.arange(width), len(values))
    mask = np.zeros((height, width), dtype=np.uint8)
    for value, cols in zip(values, columns):
        mask[:, cols] = value
    return mask


def write_image(path: Path, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> Path:
    """Write a random RGB image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Write a single-channel PNG mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    return path


def make_ade20k(root: Path, values: Sequence[int] = (0, 1, 150, 75), num_train: int = 3, num_val: int = 2) -> Path:
    """ADEChallengeData2016 under ``root``; returns the ADEChallengeData2016 folder."""
    base = root / "ADEChallengeData2016"
    for folder, prefix, count in (("training", "ADE_train", num_train), ("validation", "ADE_val", num_val)):
        for i in range(count):
            write_image(base / "images" / folder / f"{prefix}_{i + 1:08d}.jpg", seed=i)
            write_mask(base / "annotations" / folder / f"{prefix}_{i + 1:08d}.png", stripes_mask(values))
    return base


def make_cityscapes(root: Path, values: Sequence[int] = (7, 26, 0, 33), train_ids: bool = False) -> Path:
    """leftImg8bit + gtFine with two cities in train and one in val; ``train_ids`` adds *_labelTrainIds.png."""
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
    for split, names in cities.items():
        for city in names:
            for frame in range(2 if split == "train" else 1):
                stem = f"{city}_000000_{frame:06d}"
                write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=frame)
                mask_dir = root / "gtFine" / split / city
                write_mask(mask_dir / f"{stem}_gtFine_labelIds.png", stripes_mask(values))
                if train_ids:
                    write_mask(mask_dir / f"{stem}_gtFine_labelTrainIds.png", stripes_mask(range(len(values))))
    return root


def make_pascal_context(root: Path, values: Sequence[int] = (0, 1, 59, 30)) -> Path:
    """VOCdevkit/VOC2010 with SegmentationClassContext and split files; returns the VOC2010 folder."""
    base = root / "VOCdevkit" / "VOC2010"
    names = {"train": ["2008_000002", "2008_000003", "2008_000007"], "val": ["2008_000008", "2008_000009"]}
    for split, stems in names.items():
        for i, stem in enumerate(stems):
            write_image(base / "JPEGImages" / f"{stem}.jpg", seed=i)
            write_mask(base / "SegmentationClassContext" / f"{stem}.png", stripes_mask(values))
        split_file = base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("\n".join(stems) + "\n")
    return base


def make_coco_stuff(root: Path, values: Sequence[int] = (0, 170, 255, 80), raw: bool = False) -> Path:
    """images/{train2017,val2017} + annotations with *_labelTrainIds.png (or raw <id>.png if ``raw``)."""
    for split, count in (("train2017", 3), ("val2017", 2)):
        for i in range(count):
            stem = f"{i + 9:012d}"
            write_image(root / "images" / split / f"{stem}.jpg", seed=i)
            name = f"{stem}.png" if raw else f"{stem}_labelTrainIds.png"
            write_mask(root / "annotations" / split / name, stripes_mask(values))
    return root


def make_folder(root: Path, mode: str = "subfolders", values: Sequence[int] = (0, 1, 2)) -> Path:
    """A user dataset: ``images/`` + ``masks/`` split by subfolders or by train.txt / val.txt."""
    splits = {"train": ["a", "b", "c"], "val": ["d", "e"]}
    for split, stems in splits.items():
        sub = split if mode == "subfolders" else ""
        for i, stem in enumerate(stems):
            write_image(root / "images" / sub / f"{stem}.jpg", seed=i)
            write_mask(root / "masks" / sub / f"{stem}.png", stripes_mask(values))
        if mode == "split_files":
            (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root
