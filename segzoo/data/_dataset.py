"""The segmentation dataset over (image, mask) files, label mappings and file readers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from segzoo._images import image_to_rgb, load_image
from segzoo.data._files import (  # noqa: F401  (the label tables are public here too)
    IGNORE_INDEX,
    identity_label_map,
    label_map_from_dict,
    reduce_zero_label_map,
)
from segzoo.data._transforms import build_eval_transform

Transform = Callable[..., dict[str, Any]]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape H x W x 3, exactly as ``predict`` reads it
    (:mod:`segzoo._images`: EXIF orientation applied; 16-bit images by their high byte, float images as 0–1).

    Raises:
        OSError: If the file is missing, cannot be decoded, or holds pixels segzoo cannot read as RGB.
    """
    try:
        return image_to_rgb(load_image(path), f"image file {path}")
    except ValueError as exc:  # not decodable: the data layer reports file problems as OSError
        raise OSError(str(exc)) from exc


def colors_to_labels(rgb: np.ndarray, colors: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Class indices of an H x W x 3 colour mask: the pixels of ``colors[k]`` get ``k``, every other colour
    ``ignore_index``."""
    codes = _colour_codes(rgb)
    keys = _colour_codes(np.asarray(colors, dtype=np.uint8).reshape(-1, 1, 3))[:, 0]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    position = np.searchsorted(sorted_keys, codes).clip(max=len(keys) - 1)
    found = sorted_keys[position] == codes
    return np.where(found, order[position], ignore_index).astype(np.uint8)


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One int per pixel of an H x W x 3 ``uint8`` array: 0xRRGGBB."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def read_mask(path: str | Path, colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Read a class-index mask (a single-channel or palette PNG) as a ``uint8`` array of shape H x W.

    Palette ("P" mode) PNGs give their palette indices, which is how VOC-style masks store class ids. Unlike images,
    masks are read as stored, without EXIF rotation (see :func:`segzoo._images.load_image`).

    Args:
        path: The mask file.
        colors: For colour-coded masks (RGB, RGBA, or palette PNGs read as their colours): the RGB colour of each
            class index; pixels of any other colour become 255 (ignore). ``None`` reads class indices.

    Raises:
        OSError: If the file is missing or cannot be decoded.
        ValueError: If the mask is an RGB image (and ``colors`` is not given), holds values above 255, or is a
            single-channel mask while ``colors`` is given.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            if colors is not None and mode in ("RGB", "RGBA", "P"):
                img = img.convert("RGB")
            mask = np.array(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise OSError(f"Cannot read mask file '{path}': {exc}. Check that it exists and is a valid PNG.") from exc
    if colors is not None:
        if mask.ndim != 3 or mask.shape[2] < 3:
            raise ValueError(
                f"Mask file '{path}' has mode {mode}: a mask of class indices, but colors= is given, which maps RGB "
                "colour masks to classes. Remove colors (or give every mask as RGB colours)."
            )
        return colors_to_labels(mask[..., :3], colors)
    if mask.ndim != 2:
        raise ValueError(
            f"Mask file '{path}' has mode {mode} and shape {mask.shape}; masks must be single-channel images of class "
            "indices (mode L or P), not colour-coded RGB images. Run `segzoo data check <data_root>`: it lists the "
            "colours and proposes colors=[[r, g, b], ...] (one per class) for FolderDataModule, which converts "
            "colour masks as it reads them."
        )
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(
                f"Mask file '{path}' holds values outside 0-255 (min {mask.min()}, max {mask.max()}); segzoo masks "
                "are 8-bit class indices with 255 = ignore."
            )
        mask = mask.astype(np.uint8)
    return mask


def invalid_labels(mask: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> list[int]:
    """Sorted mask values that are neither a class index in ``[0, num_classes)`` nor ``ignore_index``."""
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return [int(v) for v in present if v >= num_classes and v != ignore_index]


class SegmentationDataset(Dataset):
    """Semantic-segmentation dataset over (image path, mask path) pairs.

    Each item is ``{"image", "mask", "name"}``: with a training transform a float 3 x H x W tensor and a long H x W
    tensor (255 = ignore); with the evaluation one (the default, :func:`build_eval_transform`) the image as read
    (H x W x 3 ``uint8`` array) and the long mask at the image's size, for :func:`collate_eval`. Masks are read as
    8-bit class indices and mapped through ``label_map`` (a 256-entry lookup table, e.g.
    :func:`reduce_zero_label_map`) before the values are checked and the transform runs.

    Args:
        samples: (image path, mask path) pairs.
        num_classes: Number of classes after the label mapping.
        transform: albumentations ``Compose`` called as ``transform(image=..., mask=...)`` that ends with
            ``ToTensorV2``, or :func:`build_eval_transform` (the default: the pair as read).
        label_map: 256-entry ``uint8`` lookup table applied to raw mask values; ``None`` keeps them.
        ignore_index: Mask value of ignored pixels.
        colors: For colour-coded masks: the RGB colour of each class index (see :func:`read_mask`); the label map
            applies to the class indices they give.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, str | Path]],
        num_classes: int,
        transform: Transform | None = None,
        label_map: np.ndarray | None = None,
        ignore_index: int = IGNORE_INDEX,
        colors: Sequence[Sequence[int]] | None = None,
    ):
        if label_map is not None and (label_map.shape != (256,) or label_map.dtype != np.uint8):
            raise ValueError(
                f"label_map must be a uint8 array of shape (256,), got {label_map.dtype} {label_map.shape}."
            )
        if not 0 < num_classes <= ignore_index:
            raise ValueError(f"num_classes must be in [1, {ignore_index}], got {num_classes}.")
        self.samples = [(Path(image), Path(mask)) for image, mask in samples]
        self.num_classes = num_classes
        self.transform = transform if transform is not None else build_eval_transform()
        self.label_map = label_map
        self.ignore_index = ignore_index
        self.colors = colors

    def __len__(self) -> int:
        return len(self.samples)

    def load_sample(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Read, map and check one sample before transforms.

        Returns:
            The RGB ``uint8`` image (H x W x 3), the mapped ``uint8`` mask (H x W) and the sample name (image stem).

        Raises:
            OSError: If a file cannot be read.
            ValueError: If image and mask sizes differ or the mask holds values that are not classes.
        """
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.colors)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"Image '{image_path}' is {image.shape[1]}x{image.shape[0]} (WxH) but its mask '{mask_path}' is "
                f"{mask.shape[1]}x{mask.shape[0]}; each mask must have its image's size."
            )
        if self.label_map is not None:
            mask = self.label_map[mask]
        bad = invalid_labels(mask, self.num_classes, self.ignore_index)
        if bad:
            raise ValueError(
                f"Mask '{mask_path}' holds values {bad} after the label mapping; valid values are "
                f"0..{self.num_classes - 1} and {self.ignore_index} (ignore). Check num_classes / classes, or set "
                "reduce_zero_label=True if labels start at 1 with 0 meaning unlabelled."
            )
        return image, mask, image_path.stem

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, name = self.load_sample(index)
        return apply_transform(self.transform, image, mask, name)


def apply_transform(transform: Transform, image: np.ndarray, mask: np.ndarray, name: str) -> dict[str, Any]:
    """Run a transform on an (image, mask) pair and package the result as a dataset item.

    A training transform ends with ``ToTensorV2`` (a float 3×H×W image, a mask tensor); the evaluation one
    (:func:`build_eval_transform`) keeps the pair as read: the item then holds the H×W×3 ``uint8`` array itself, which
    the scoring path resizes and normalises (and which stays on the CPU when Lightning moves a batch to the GPU), and
    the mask as an int64 tensor at its original size.
    """
    out = transform(image=image, mask=mask)
    image_t, mask_t = out["image"], out["mask"]
    if isinstance(image_t, np.ndarray) and isinstance(mask_t, np.ndarray):
        return {"image": image_t, "mask": torch.from_numpy(mask_t.astype(np.int64)), "name": name}
    if not isinstance(image_t, torch.Tensor) or not isinstance(mask_t, torch.Tensor):
        raise TypeError("The transform must end with A.ToTensorV2() so that it returns tensors.")
    return {"image": image_t.float(), "mask": mask_t.long(), "name": name}


def collate_eval(items: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collates evaluation items into a batch of lists (``{"image": [...], "mask": [...], "name": [...]}``): the
    images keep their own sizes, as mmsegmentation's ``pseudo_collate`` keeps them."""
    return {key: [item[key] for item in items] for key in items[0]} if items else {}
