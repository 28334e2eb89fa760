"""Inference for any segzoo model: whole image, sliding window, multi-scale + flip TTA, and ``predict``.

Every function here works on any ``nn.Module`` whose ``model(x)`` maps a normalised B×3×H×W float tensor to
B×K×H×W logits at the input size. The sliding-window grid and the test-time augmentation follow mmsegmentation 1.x
(``EncoderDecoder.slide_inference`` and ``SegTTAModel``) so that scores are comparable with published ones.

``predict`` is the user-facing entry point: it reads paths, PIL images, numpy arrays or tensors, applies the
checkpoint's own preprocessing (``model.pretrained_cfg``) and returns label maps at the input size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from segzoo._errors import InputSizeError
from segzoo._images import IMAGE_EXTENSIONS, image_to_rgb, list_images, load_image
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, TTA_SCALES, EvalProtocol, keep_ratio_size, size_pair
from segzoo._preprocessing import window_spans as _window_spans
from segzoo.models._resize import interpolation_matrix

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "TTA_SCALES",
    "inference",
    "keep_ratio_size",
    "list_images",
    "load_image",
    "merge_multiscale_flip",
    "multiscale_flip_inference",
    "predict",
    "predict_arrays",
    "preprocess",
    "slide_inference",
    "whole_inference",
]

ImageInput = str | Path | Image.Image | np.ndarray | Tensor


def _resize(tensor: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``, no antialiasing: cv2 in mmseg's pipeline), skipped at the same size."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------------------
# Tensor-level inference
# ---------------------------------------------------------------------------------------------------------------------


def whole_inference(model: nn.Module, images: Tensor) -> Tensor:
    """Runs the model once on the whole (already normalised) images.

    Args:
        model: Segmentation model returning B×K×H×W logits at the input size.
        images: Normalised B×3×H×W float tensor.

    Returns:
        B×K×H×W logits.
    """
    return model(images)


def slide_inference(
    model: nn.Module,
    images: Tensor,
    crop_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    batch_size: int = 4,
) -> Tensor:
    """Sliding-window inference with overlapping windows averaged, as mmsegmentation's ``slide_inference``.

    Windows of ``crop_size`` start every ``stride`` pixels; the last row/column of windows is shifted back to end at
    the image border, and an image smaller than the crop is run whole (no padding). Logits of overlapping windows are
    summed and divided by the number of windows covering each pixel. Windows of one image are run ``batch_size`` at
    a time, so memory stays bounded for large images.

    Args:
        model: Segmentation model returning logits at the input size.
        images: Normalised B×3×H×W float tensor.
        crop_size: Window size, an int or (height, width).
        stride: Step between windows, an int or (height, width).
        batch_size: Number of windows per forward pass.

    Returns:
        B×K×H×W float32 logits.
    """
    crop_h, crop_w = size_pair(crop_size, "crop_size")
    stride_h, stride_w = size_pair(stride, "stride")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if stride_h > crop_h or stride_w > crop_w:
        raise ValueError(
            f"a stride of {stride} with windows of {crop_size} leaves pixels no window covers: use a stride no "
            f"larger than the window (mmseg's grid: e.g. crop 512, stride 341)"
        )
    height, width = images.shape[-2:]
    windows = [
        (y1, y2, x1, x2)
        for y1, y2 in _window_spans(height, crop_h, stride_h)
        for x1, x2 in _window_spans(width, crop_w, stride_w)
    ]
    count = torch.zeros((1, 1, height, width), dtype=torch.float32, device=images.device)
    for y1, y2, x1, x2 in windows:
        count[..., y1:y2, x1:x2] += 1

    outputs = []
    for image in images:  # one image at a time: a forward pass never holds more than batch_size windows
        summed = None
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            crops = torch.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
            logits = model(crops)
            if summed is None:  # float32 sums: bf16 windows under autocast would lose precision when added
                summed = torch.zeros((logits.shape[1], height, width), dtype=torch.float32, device=logits.device)
            for (y1, y2, x1, x2), window_logits in zip(chunk, logits):
                summed[:, y1:y2, x1:x2] += window_logits
        outputs.append(summed)
    return torch.stack(outputs) / count


def _run(
    model: nn.Module,
    images: Tensor,
    mode: str,
    crop_size: int | tuple[int, int] | None,
    stride: int | tuple[int, int] | None,
    batch_size: int,
) -> Tensor:
    if mode == "whole":
        return whole_inference(model, images)
    if mode == "slide":
        if crop_size is None or stride is None:
            raise ValueError("slide inference needs crop_size and stride (e.g. crop_size=512, stride=341)")
        return slide_inference(model, images, crop_size, stride, batch_size)
    raise ValueError(f"unknown inference mode {mode!r}; expected 'whole' or 'slide'")


def merge_multiscale_flip(
    model: nn.Module,
    inputs: Sequence[Tensor],
    output_size: tuple[int, int],
    flip: bool = True,
    mode: str = "whole",
    crop_size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    batch_size: int = 4,
) -> Tensor:
    """Multi-scale (and horizontal flip) test-time augmentation over inputs already resized for each scale.

    Each input is run whole or by sliding window, also flipped when ``flip``; the logits of every pass are resized to
    ``output_size`` (mmseg: the original image size) and, as mmseg 0.x's ``aug_test`` and 1.x's
    ``SegTTAModel.merge_preds`` do, their *softmax probabilities* are averaged.

    Returns:
        B×K×``output_size`` float32 log of the averaged probabilities: its softmax (and argmax) are those of the
        ensemble, so it can be used wherever logits are expected.
    """
    if len(inputs) == 0:
        raise ValueError("multi-scale testing needs at least one scale, e.g. scales=(0.5, 1.0, 1.5)")
    probs_sum = None
    num_passes = 0
    for scaled in inputs:
        for flipped in (False, True) if flip else (False,):
            logits = _run(model, scaled.flip(-1) if flipped else scaled, mode, crop_size, stride, batch_size)
            if flipped:
                logits = logits.flip(-1)
            probs = _resize(logits.float(), output_size).softmax(dim=1)
            probs_sum = probs if probs_sum is None else probs_sum + probs
            num_passes += 1
    return (probs_sum / num_passes).clamp_min(torch.finfo(torch.float32).tiny).log()


def multiscale_flip_inference(
    model: nn.Module,
    images: Tensor,
    scales: Sequence[float] = TTA_SCALES,
    flip: bool = True,
    mode: str = "whole",
    crop_size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    batch_size: int = 4,
    output_size: tuple[int, int] | None = None,
) -> Tensor:
    """Multi-scale + flip TTA on a batch of already normalised images, rescaled as float tensors.

    For training-time validation on batches. The publishers' protocol resizes the original ``uint8`` image once per
    scale; ``predict`` (through :class:`~segzoo.preprocessing.EvalProtocol`) does that, and its labels are the
    ones comparable with published multi-scale scores.

    Args:
        model: Segmentation model returning logits at the input size.
        images: Normalised B×3×H×W float tensor.
        scales: Resize factors (sizes rounded half up).
        flip: Also run every scale on the horizontally flipped images.
        mode: ``"whole"`` or ``"slide"``.
        crop_size: Window size for slide mode.
        stride: Window stride for slide mode.
        batch_size: Windows per forward pass in slide mode.
        output_size: Size the logits of every pass are resized to before averaging; the input size by default.

    Returns:
        See :func:`merge_multiscale_flip`.
    """
    height, width = images.shape[-2:]
    inputs = [_resize(images, (int(height * s + 0.5), int(width * s + 0.5))) for s in scales]
    return merge_multiscale_flip(
        model, inputs, output_size or (height, width), flip, mode, crop_size, stride, batch_size
    )


def inference(
    model: nn.Module, images: Tensor, protocol: EvalProtocol | None = None, *, tta: bool = False, batch_size: int = 4
) -> Tensor:
    """Runs whole, sliding-window or TTA inference on already normalised images as a test pipeline says.

    Args:
        model: Segmentation model returning logits at the input size.
        images: Normalised B×3×H×W float tensor.
        protocol: The mode and window (``protocol.mode``, ``crop``, ``stride``) and, for TTA, ``tta_scales`` and
            ``flip``; default whole image.
        tta: Multi-scale + flip test-time augmentation of the batch itself (see :func:`multiscale_flip_inference`).
        batch_size: Windows per forward pass in slide mode.

    Returns:
        B×K×H×W logits (with ``tta``, log-probabilities of the ensemble).
    """
    p = protocol or EvalProtocol()
    if tta:
        return multiscale_flip_inference(model, images, p.tta_scales, p.flip, p.mode, p.crop, p.stride, batch_size)
    return _run(model, images, p.mode, p.crop, p.stride, batch_size)


# ---------------------------------------------------------------------------------------------------------------------
# Reading and preprocessing images
# ---------------------------------------------------------------------------------------------------------------------


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
        warnings.warn(f"{source} holds {int((~finite).sum())} NaN or infinite values; their labels are meaningless",
                      stacklevel=4)
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


# ---------------------------------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------------------------------


def _model_placement(model: nn.Module) -> dict[str, Any]:
    """The device and floating dtype of the model's weights: predict casts its inputs to them."""
    param = next(model.parameters(), None)
    return {"device": param.device, "dtype": param.dtype} if param is not None else {"device": torch.device("cpu")}


# ---------------------------------------------------------------------------------------------------------------------
# Full-resolution labels, strip by strip
# ---------------------------------------------------------------------------------------------------------------------

# Bytes of float32 logits one strip of output rows may hold (a 4032×3024 photo's 150-class logits would take 7 GB).
TILE_BYTES = 32 * 2**20


@dataclass
class LogitsField:
    """One image's logits (K×h×w, at any resolution) and how they reach the output size: per axis a chain of
    bilinear resizes (``("resize", n)``) and crops to the first n (``("crop", n)``), then an optional flip of the
    columns (a mirrored test pass)."""

    logits: Tensor
    rows: list[tuple[str, int]]
    cols: list[tuple[str, int]]
    flip: bool = False

    def row_taps(self) -> tuple[Tensor, Tensor]:
        """The row chain as one interpolation matrix without its zeros: for each output row the few logits rows it
        reads (``index``) and their weights (``weight``), both (output rows)×taps. Composed bilinear resizes stay
        banded, so a row reads a handful of rows whatever the chain."""
        matrix = torch.eye(self.logits.shape[1], dtype=torch.float64, device=self.logits.device)
        for op, n in self.rows:
            if op == "resize":  # uncached: one matrix per photo size would pile up in the cache
                matrix = interpolation_matrix.__wrapped__(matrix.shape[0], n, torch.float64, matrix.device) @ matrix
            else:
                matrix = matrix[:n]
        matrix = matrix.float()
        taps = int((matrix != 0).sum(dim=1).max())
        index = matrix.abs().topk(taps, dim=1).indices
        return index, matrix.gather(1, index)

    def columns(self, strip: Tensor) -> Tensor:
        """The column chain applied to a K×r×w strip of rows (all the logits' columns), then mirrored back for a
        flipped pass; each resize is ``F.interpolate`` along the width, as mmseg resizes (a strip holds whole rows, so
        every output column mixes the same inputs with the same weights as in the whole map)."""
        for op, n in self.cols:
            if op == "crop":
                strip = strip[..., :n]
            elif n != strip.shape[2]:
                k, r, w = strip.shape
                rows = F.interpolate(strip.reshape(1, k * r, w), size=n, mode="linear", align_corners=False)
                strip = rows.view(k, r, n)
        return strip.flip(-1) if self.flip else strip  # the mirrored pass back, as mmseg flips its logits


def _gather_rows(logits: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Rows of K×h×w logits mixed as an interpolation matrix with few non-zeros per row says: Σ_t ``weight[:, t]`` ×
    ``logits[:, index[:, t]]`` (whole rows: contiguous reads)."""
    out = None
    for tap in range(index.shape[1]):
        term = logits.index_select(1, index[:, tap]).mul_(weight[:, tap].view(1, -1, 1))
        out = term if out is None else out.add_(term)
    return out


def fields_for_input(model: nn.Module, images: Tensor, protocol: EvalProtocol, output: tuple[int, int],
                     flip: bool = False, batch_size: int = 4) -> list[LogitsField]:
    """Run ``model`` on a batch (already resized and normalised) in the protocol's mode and describe each image's
    logits as a field at ``output`` size. A segzoo model in whole mode gives its decode head's low-resolution logits,
    so nothing of the output's size is ever allocated; other models and slide mode give logits at the input size."""
    inputs = images.flip(-1) if flip else images
    height, width = images.shape[-2:]
    head_logits = hasattr(model, "forward_head") and getattr(model, "unpad", None) in ("resize", "crop")
    if protocol.mode == "whole" and head_logits:
        logits, (padded_h, padded_w) = model.forward_head(inputs)
        if model.unpad == "resize":  # see EncoderDecoder._to_input_size
            rows, cols = [("resize", height)], [("resize", width)]
        else:
            rows, cols = [("resize", padded_h), ("crop", height)], [("resize", padded_w), ("crop", width)]
    else:
        logits = _run(model, inputs, protocol.mode, protocol.crop, protocol.stride, batch_size)
        rows, cols = [], []
    rows, cols = [*rows, ("resize", output[0])], [*cols, ("resize", output[1])]
    return [LogitsField(image_logits, rows, cols, flip) for image_logits in logits]


def labels_from_fields(fields: Sequence[LogitsField], output: tuple[int, int]) -> Tensor:
    """The argmax over classes of the fields' logits (one field) or of their averaged softmax (several: the
    multi-scale + flip ensemble, as mmseg merges it), a strip of output rows at a time so memory stays bounded.

    For each strip, the logits rows its output rows read are mixed (:func:`_gather_rows`: a few rows per output row),
    then the whole width goes through the field's column chain (:meth:`LogitsField.columns`). Returns an int64
    tensor on the logits' device."""
    height, width = output
    num_classes = fields[0].logits.shape[0]
    prepared = [(field, field.logits.float(), *field.row_taps()) for field in fields]
    widths = [n for field in fields for op, n in field.cols if op == "resize"]
    widest = max(width, *(field.logits.shape[2] for field in fields), *widths)
    rows_per_strip = max(1, TILE_BYTES // (4 * num_classes * widest))
    labels = torch.empty((height, width), dtype=torch.int64, device=fields[0].logits.device)
    for top in range(0, height, rows_per_strip):
        bottom = min(height, top + rows_per_strip)
        total = None
        for field, logits, row_index, row_weight in prepared:
            strip = field.columns(_gather_rows(logits, row_index[top:bottom], row_weight[top:bottom]))  # K×r×W
            if len(fields) > 1:
                strip = strip.softmax(dim=0)
            total = strip if total is None else total.add_(strip)
        labels[top:bottom] = total.argmax(dim=0)
    return labels


def _predict_labels(model: nn.Module, inputs: list[Tensor], protocol: EvalProtocol, original: tuple[int, int],
                    tta: bool, batch_size: int) -> list[Tensor]:
    """Labels at the original size for a batch of images (one input), or for one image from its multi-scale inputs
    (``tta``; each also mirrored when ``protocol.flip``). As mmseg, logits are brought to the original size before
    the argmax, and each multi-scale pass before its probabilities are averaged."""
    if not tta:
        fields = fields_for_input(model, inputs[0], protocol, original, batch_size=batch_size)
        return [labels_from_fields([field], original) for field in fields]
    fields = [
        field
        for scaled in inputs
        for flip in ((False, True) if protocol.flip else (False,))
        for field in fields_for_input(model, scaled, protocol, original, flip, batch_size)
    ]
    return [labels_from_fields(fields, original)]


def predict(
    model: nn.Module,
    image_or_images: ImageInput | Sequence[ImageInput],
    *,
    mode: str | None = None,
    tta: bool = False,
    crop_size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    batch_size: int = 4,
) -> np.ndarray | list[np.ndarray]:
    """Predicts label maps at the input size, with the checkpoint's own preprocessing and evaluation mode.

    Args:
        model: A segzoo model, whose test pipeline is ``model.eval_protocol`` (or any module returning logits at the
            input size; one carrying a ``pretrained_cfg`` with an ``"eval"`` entry is read as segzoo models are).
        image_or_images: One image (path, PIL image, numpy array, C×H×W tensor), a list of them, or a B×C×H×W
            tensor / B×H×W×C array.
        mode: ``"whole"`` or ``"slide"``; defaults to the protocol's.
        tta: Multi-scale + flip test-time augmentation as the checkpoint's published multi-scale score was computed
            (``eval_protocol.tta_style``: mmseg 0.x or 1.x, see :mod:`segzoo._preprocessing`).
        crop_size: Window size for slide mode; defaults to the protocol's window.
        stride: Window stride for slide mode; defaults to the protocol's.
        batch_size: Images (whole mode) or windows (slide mode) per forward pass.

    Returns:
        An int64 H×W label map for one image; a list of them for a list input; a B×H×W array for a batch
        tensor/array.
    """
    single = not isinstance(image_or_images, (list, tuple)) and not (
        isinstance(image_or_images, (Tensor, np.ndarray)) and image_or_images.ndim == 4
    )
    images = [image_or_images] if single else list(image_or_images)
    if not images:
        raise ValueError("no images given to predict")
    protocol = EvalProtocol.of(model).with_window(mode, crop_size, stride)
    per_batch = 1 if protocol.mode == "slide" or tta else max(1, batch_size)
    labels: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # Only ``per_batch`` images are decoded at a time.
            for start in range(0, len(images), per_batch):
                arrays = [_image_array(image) for image in images[start : start + per_batch]]
                try:
                    chunk = predict_arrays(model, arrays, protocol, tta=tta, batch_size=batch_size)
                except InputSizeError as err:  # say which images: a folder of photos may hold one tiny file
                    given = images[start : start + per_batch]
                    what = ", ".join(
                        f"{item if isinstance(item, (str, Path)) else 'an image'} ({a.shape[1]}×{a.shape[0]} px)"
                        for item, a in zip(given, arrays)
                    )
                    raise InputSizeError(f"{what}: {err}") from None
                labels.extend(image_labels.cpu().numpy() for image_labels in chunk)
    finally:
        model.train(was_training)
    if single:
        return labels[0]
    if isinstance(image_or_images, (Tensor, np.ndarray)):
        return np.stack(labels)
    return labels


def predict_arrays(
    model: nn.Module,
    images: Sequence[np.ndarray],
    protocol: EvalProtocol,
    *,
    tta: bool = False,
    batch_size: int = 4,
) -> list[Tensor]:
    """Label maps at each image's own size through a test pipeline: segzoo's one scoring path, shared by
    :func:`predict`, validation and test in :class:`~segzoo.training.SegmentationTask` and ``segzoo eval``.

    As mmsegmentation's test loop: each image (H×W×3 as read, uint8 0–255) is resized and normalised by ``protocol``
    (its keep-ratio test resize on the ``uint8`` image with OpenCV, ``size_divisor``, mean/std), run whole or by
    sliding window (``protocol.mode``), and the logits are resized to the image's own size before the argmax. With
    ``tta``, every multi-scale input is resized from the original image by the protocol's rule
    (``protocol.tta_style``, ratios ``protocol.tta_scales``), also run mirrored when ``protocol.flip``, and the
    softmax of every pass is averaged at the original size. The full-resolution labels are built strip by strip
    from the logits, so a large photo never holds its K×H×W logits. In whole mode, images of the same size run as
    one batch of up to ``batch_size``; in slide mode ``batch_size`` is the number of windows per forward pass.

    The caller sets eval mode and turns autograd off (``predict`` does; Lightning does in validation and test).

    Args:
        model: A model mapping normalised B×3×h×w images to B×K×h×w logits (segzoo models also give their head's
            low-resolution logits to the strips).
        images: H×W×3 arrays, uint8 (0–255) or float on the 0–255 scale; sizes may differ.
        protocol: The test pipeline and inference mode (``model.eval_protocol``, or one a DataModule describes).
        tta: Multi-scale + flip.
        batch_size: Images per forward pass (whole mode), windows per forward pass (slide mode).

    Returns:
        One int64 H×W tensor per image, on the model's device.
    """
    placement = _model_placement(model)
    if tta or protocol.mode == "slide":
        groups = [[index] for index in range(len(images))]
    else:  # same-size images share a forward pass
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[:2]), []).append(index)
        groups = [same[i : i + batch_size] for same in by_size.values() for i in range(0, len(same), batch_size)]
    labels: list[Tensor | None] = [None] * len(images)
    for indices in groups:
        original = tuple(images[indices[0]].shape[:2])
        if tta:  # every scale resized from the original image
            inputs = [x.to(**placement) for x in protocol.tta_inputs(images[indices[0]])]
        else:
            inputs = [torch.cat([protocol(images[i]) for i in indices]).to(**placement)]
        for index, image_labels in zip(indices, _predict_labels(model, inputs, protocol, original, tta, batch_size)):
            labels[index] = image_labels
    return labels
