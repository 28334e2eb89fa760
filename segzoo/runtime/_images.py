"""Reading images for the runtime, as ``segzoo.predict`` reads them: PIL with the EXIF orientation applied, RGB, and
``uint8`` kept as ``uint8`` (the test pipeline resizes ``uint8`` images with OpenCV, as mmseg does)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The image files a folder is searched for (the same list as segzoo.inference's).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

ImageLike = str | Path | Image.Image | np.ndarray


def list_images(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files and folders (searched recursively, sorted) as a list of image files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return files


def read_image(image: ImageLike) -> np.ndarray:
    """A path, PIL image or array as an H×W×3 RGB array on the 0–255 scale: ``uint8`` for 8-bit inputs, float32
    otherwise (float arrays are read as 0–1, as ``predict`` reads them)."""
    if isinstance(image, (str, Path)):
        image = _open(Path(image))
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "F"):
            values = np.asarray(image, dtype=np.float32)
            return np.repeat(values[:, :, None] * (255.0 / max(float(values.max()), 1.0)), 3, axis=2)
        return np.asarray(image.convert("RGB"))
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
    if array.dtype != np.uint8:
        return array.astype(np.float32)
    return array


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist" if not path.exists() else f"{path} is a folder")
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image file {path}: {err}; expected an image PIL can open") from err
