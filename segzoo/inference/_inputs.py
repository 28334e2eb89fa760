"""Images as ``predict`` takes them (file paths, PIL images, numpy arrays, tensors) made into a checkpoint's input:
read as training reads them, converted to RGB on the 0–255 scale, then resized and normalised by the test pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from segzoo._images import image_to_rgb, load_image
from segzoo._preprocessing import EvalProtocol

__all__ = ["ImageInput", "preprocess"]

ImageInput = str | Path | Image.Image | np.ndarray | Tensor


def _channels_to_rgb(array: np.ndarray, source: str) -> np.ndarray:
    """Makes an H×W×C float array RGB: grayscale is repeated, an alpha channel dropped (both with a warning)."""
    channels = array.shape[2]
    if channels == 3:
        return array
    if channels == 1:
        warnings.warn(f"{source} is grayscale; repeating it to 3 RGB channels", stacklevel=4)
        return np.repeat(array, 3, axis=2)
    if channels == 4:
        warnings.warn(f"{source} has 4 channels (RGBA); dropping the alpha channel", stacklevel=4)
        return array[:, :, :3]
    raise ValueError(
        f"{source} has {channels} channels; expected an RGB image (3 channels), grayscale (1) or RGBA (4), with the "
        "channels as the first (C×H×W tensor) or last (H×W×C array) dimension"
    )


def _pil_to_array(image: Image.Image, source: str) -> np.ndarray:
    """A PIL image as training reads it (:func:`segzoo._images.image_to_rgb`), saying what was converted."""
    if image.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"):
        warnings.warn(f"{source} is grayscale (mode {image.mode}); converting it to RGB", stacklevel=4)
    elif image.mode in ("RGBA", "PA"):
        warnings.warn(f"{source} has an alpha channel (mode {image.mode}); dropping it", stacklevel=4)
    return image_to_rgb(image, source)


def _warn_if_not_unit_range(array: np.ndarray, source: str) -> None:
    """Float images are read as 0–1: say so when the values cannot be that (0–255 floats give wrong labels)."""
    finite = np.isfinite(array)
    if not finite.all():
        warnings.warn(
            f"{source} holds {int((~finite).sum())} NaN or infinite values; their labels are meaningless", stacklevel=4
        )
    values = array[finite]
    if values.size and (values.min() < 0 or values.max() > 1):
        warnings.warn(
            f"{source} is a float image with values in [{values.min():g}, {values.max():g}], but float images are "
            "read as 0–1 (torchvision's convention): divide by 255, or pass a uint8 array",
            stacklevel=4,
        )


def _to_rgb_array(image: ImageInput) -> np.ndarray:
    """Any supported input as an H×W×3 array on the 0–255 scale: ``uint8`` where the input is 8-bit (files, PIL
    images, ``uint8`` arrays and tensors), so that it is resized as the publishers' pipelines resize it, else float32.

    Integer arrays/tensors are read as 0–255, except ``uint16`` ones, which are 16-bit images read as 16-bit files
    are (their high byte, :mod:`segzoo._images`); float ones as 0–1 (torchvision's convention).
    """
    if isinstance(image, (str, Path)):
        return _pil_to_array(load_image(image), f"image {image}")
    if isinstance(image, Image.Image):
        return _pil_to_array(image, "the PIL image")
    if isinstance(image, Tensor):
        array = image.detach().cpu().numpy()
        # Tensors are C×H×W unless only the last dimension can be channels.
        channels_first = array.ndim == 3 and not (array.shape[0] > 4 and array.shape[-1] <= 4)
        source = "the tensor"
    elif isinstance(image, np.ndarray):
        array = image
        # Arrays are H×W×C unless only the first dimension can be channels.
        channels_first = array.ndim == 3 and array.shape[-1] > 4 and array.shape[0] <= 4
        source = "the array"
    else:
        raise TypeError(
            f"unsupported image type {type(image).__name__}; pass a file path, PIL image, numpy array or tensor"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim != 3:
        raise ValueError(
            f"{source} has shape {tuple(array.shape)}; expected H×W (grayscale), H×W×C (array) or C×H×W (tensor)"
        )
    elif channels_first:
        array = array.transpose(1, 2, 0)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{source} has dtype {array.dtype}; expected uint8 (0–255) or float (0–1) values")
    if np.issubdtype(array.dtype, np.floating):
        _warn_if_not_unit_range(array, source)
        array = array.astype(np.float32) * 255.0
    elif array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = array.astype(np.float32)
    return _channels_to_rgb(array, f"{source} of shape {tuple(image.shape)}")


def preprocess(image: ImageInput, protocol: EvalProtocol | None = None) -> tuple[Tensor, tuple[int, int]]:
    """Turns one image into the normalised tensor a checkpoint expects, with its test pipeline
    (:class:`~segzoo.preprocessing.EvalProtocol`).

    Grayscale and RGBA inputs are converted to RGB (with a warning). The image is resized with the checkpoint's
    keep-ratio test rule when ``protocol.test_scale`` is set (e.g. ``(2048, 512)`` for ADE20K), then to the next
    multiple of ``protocol.size_divisor`` when that is set (NVlabs SegFormer's ``AlignedResize``), both with OpenCV
    on the ``uint8`` image as mmseg does, and normalised with ``protocol.mean`` / ``std`` (RGB, 0–255 scale;
    ImageNet statistics by default).

    Args:
        image: A file path, PIL image, numpy array (H×W×C or H×W; uint8 0–255 or float 0–1) or tensor (C×H×W or
            H×W×C; uint8 0–255 or float 0–1).
        protocol: The test pipeline (``model.eval_protocol``); default ImageNet statistics, no resize.

    Returns:
        The 1×3×h×w float tensor and the original (height, width), to resize the prediction back to.
    """
    array = _image_array(image)
    return (protocol or EvalProtocol())(array), array.shape[:2]


def _image_array(image: ImageInput) -> np.ndarray:
    array = _to_rgb_array(image)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image has an empty size {array.shape[0]}×{array.shape[1]}")
    return array
