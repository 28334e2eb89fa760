"""Reading image files, the one way segzoo does it: ``segzoo predict``, the DataModules' images and ``segzoo data
check`` find files and turn them into RGB pixels with these functions (numpy and Pillow only).

Pixels: 8-bit images as Pillow converts them to RGB (grayscale repeated, palette expanded, alpha dropped); 16-bit
images by their high byte (value // 256), as OpenCV (mmseg's reader) and Pillow's own 16-bit RGB PNG reader do;
32-bit float images as 0–1 (torchvision's convention). A float image outside 0–1 or an integer image beyond 16 bits
is refused, naming the file, rather than clipped or stretched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "find_image_files",
    "image_to_rgb",
    "list_images",
    "load_image",
    "missing_file_error",
    "walk_files",
]

# The image files segzoo reads: folders given to ``predict`` and FolderDataModule's ``images/`` alike.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's 16- and 32-bit integer grayscale


def walk_files(folder: str | Path) -> Iterator[Path]:
    """Every file under ``folder``, recursively. Symbolic links to folders are followed (a link back to a folder
    it lies in is not, so loops end), and a symbolic link whose target is missing is listed like a file: reading it
    then says what is wrong instead of the file vanishing from the dataset."""
    folder = Path(folder)
    chains = {str(folder): {os.path.realpath(folder)}}  # each folder -> the real paths of it and its parents
    for root, dirs, files in os.walk(folder, followlinks=True):
        chain = chains.pop(root)
        kept = []
        for name in dirs:
            real = os.path.realpath(os.path.join(root, name))
            if real not in chain:  # a link to itself or to a parent would loop
                chains[os.path.join(root, name)] = chain | {real}
                kept.append(name)
        dirs[:] = kept
        for name in files:
            yield Path(root, name)


def find_image_files(folder: str | Path) -> list[Path]:
    """Image files (by extension, :data:`IMAGE_EXTENSIONS`) under ``folder``, recursively and sorted; see
    :func:`walk_files` for symbolic links."""
    return sorted(path for path in walk_files(folder) if path.suffix.lower() in IMAGE_EXTENSIONS)


def list_images(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expands files and folders (searched recursively, sorted, symbolic links followed) into a list of image files.

    Raises:
        FileNotFoundError: A path does not exist (or is a symbolic link to nothing).
        ValueError: A folder holds no image files, or nothing was given.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = find_image_files(path)
            if not found:
                raise ValueError(
                    f"folder {path} holds no images (looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise missing_file_error(path, "input")
    if not files:
        raise ValueError("no input images given")
    return files


def missing_file_error(path: Path, what: str) -> FileNotFoundError:
    """A missing file's error; a symbolic link whose target is gone says so."""
    if path.is_symlink():
        return FileNotFoundError(f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist")
    return FileNotFoundError(f"{what} {path} does not exist")


def load_image(path: str | Path) -> Image.Image:
    """Opens an image file (applying its EXIF orientation) without converting its mode: segzoo's one image reader,
    for prediction and for training images (``segzoo.data.read_image``); :func:`image_to_rgb` makes its pixels.

    Raises:
        FileNotFoundError: The file does not exist.
        IsADirectoryError: The path is a folder.
        ValueError: The file is not an image PIL can read.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; pass image files, or expand it with segzoo.inference.list_images({str(path)!r})"
        )
    if not path.exists():
        raise missing_file_error(path, "image file")
    try:
        with Image.open(path) as image:
            image.load()
            # EXIF orientation is applied to every image, for training and prediction alike, as mmseg's reader does
            # (cv2 IMREAD_COLOR); label masks are read as stored (mmseg: 'unchanged'; segzoo.data.read_mask), as
            # they are drawn on the upright image (a mask of a 90°-tagged image's stored pixels fails the dataset's
            # size check).
            return ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"cannot read image file {path}: {err}; expected an image PIL can open (PNG, JPEG, ...)"
        ) from err


def image_to_rgb(image: Image.Image, source: str = "the image") -> np.ndarray:
    """The image's pixels as an H×W×3 ``uint8`` RGB array, by the rule of this module's docstring.

    Args:
        image: An image from :func:`load_image` (or any PIL image).
        source: What the image is (e.g. ``"image file x.tif"``), for the error message.

    Raises:
        ValueError: A float image with values outside 0–1 (or NaN), or an integer image with values beyond 16 bits.
    """
    if image.mode in WIDE_INTEGER_MODES:
        values = np.asarray(image)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{source} is a 32-bit integer image with values in [{values.min()}, {values.max()}]; segzoo reads "
                "8- and 16-bit images: save it as one"
            )
        return np.repeat((values.astype(np.uint32) >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        finite = np.isfinite(values)
        if not finite.all() or (values.size and (values.min() < 0 or values.max() > 1)):
            shown = f"[{values[finite].min():g}, {values[finite].max():g}]" if finite.any() else "none finite"
            raise ValueError(
                f"{source} is a 32-bit float image with values {shown}"
                + (f" and {int((~finite).sum())} NaN or infinite" if not finite.all() else "")
                + "; segzoo reads float images as 0–1 (torchvision's convention): scale it to 0–1, or save it as an "
                "8- or 16-bit image"
            )
        return np.repeat(np.rint(values * 255.0).astype(np.uint8)[:, :, None], 3, axis=2)
    try:
        return np.array(image.convert("RGB"))  # a writable copy (transforms may work in place)
    except ValueError as err:  # a mode Pillow cannot convert to RGB
        raise ValueError(f"{source} has mode {image.mode}, which cannot be converted to RGB ({err})") from err
