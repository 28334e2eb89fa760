"""Tensor-level inference for any segzoo model: whole image, sliding window, and multi-scale + flip TTA.

Every function here works on any ``nn.Module`` whose ``model(x)`` maps a normalised B×3×H×W float tensor to
B×K×H×W logits at the input size. The sliding-window grid and the test-time augmentation follow mmsegmentation 1.x
(``EncoderDecoder.slide_inference`` and ``SegTTAModel``) so that scores are comparable with published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo._preprocessing import TTA_SCALES, EvalProtocol, size_pair
from segzoo._preprocessing import window_spans as _window_spans

__all__ = ["inference", "merge_multiscale_flip", "multiscale_flip_inference", "slide_inference", "whole_inference"]


def _resize(tensor: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``, no antialiasing: cv2 in mmseg's pipeline), skipped at the same size."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size, mode="bilinear", align_corners=False)


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
