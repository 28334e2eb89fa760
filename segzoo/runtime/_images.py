"""Reading images for the runtime, as ``segzoo.predict`` reads them: files and PIL images by segzoo's one rule
(:mod:`segzoo._images`: EXIF orientation, RGB, 16-bit by the high byte, float files as 0–1), arrays as given, with
``uint8`` kept as ``uint8`` (the test pipeline resizes ``uint8`` images with OpenCV, as mmseg does)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from segzoo._images import image_to_rgb, list_images, load_image

__all__ = ["ImageLike", "list_images", "read_image"]

ImageLike = str | Path | Image.Image | np.ndarray


def read_image(image: ImageLike) -> np.ndarray:
    """A path, PIL image or array as an H×W×3 RGB array on the 0–255 scale: ``uint8`` for 8-bit inputs, float32
    otherwise (float arrays are read as 0–1 and ``uint16`` arrays by their high byte, as ``predict`` reads them)."""
    if isinstance(image, (str, Path)):
        return image_to_rgb(load_image(image), f"image file {image}")
    if isinstance(image, Image.Image):
        return image_to_rgb(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"unsupported image type {type(image).__name__}; pass a file path, PIL image or numpy array")
    array = image[:, :, None] if image.ndim == 2 else image
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise ValueError(f"expected an H×W×3 (RGB), H×W×4 or H×W image array, got shape {image.shape}")
    if array.shape[2] == 4:
        warnings.warn("the image has 4 channels (RGBA); dropping the alpha channel", stacklevel=3)
        array = array[:, :, :3]
    elif array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32) * 255.0
    if array.dtype == np.uint16:  # a 16-bit image: its high byte, as predict reads it
        return (array >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        return array.astype(np.float32)
    return array
