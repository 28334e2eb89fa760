"""``predict`` and ``predict_arrays``: label maps at each image's own size through a checkpoint's test pipeline.

``predict`` is the user-facing entry point: it reads paths, PIL images, numpy arrays or tensors
(:mod:`segzoo.inference._inputs`), applies the checkpoint's own preprocessing (``model.eval_protocol``), runs the
model whole or by sliding window with optional multi-scale + flip (:mod:`segzoo.inference._tensor`) and brings the
logits to the input size strip by strip (:mod:`segzoo.inference._tiles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segzoo._errors import InputSizeError
from segzoo._preprocessing import EvalProtocol
from segzoo.inference._inputs import ImageInput, _image_array
from segzoo.inference._tiles import fields_for_input, labels_from_fields

__all__ = ["predict", "predict_arrays"]


def _model_placement(model: nn.Module) -> dict[str, Any]:
    """The device and floating dtype of the model's weights: predict casts its inputs to them."""
    param = next(model.parameters(), None)
    return {"device": param.device, "dtype": param.dtype} if param is not None else {"device": torch.device("cpu")}


def _predict_labels(
    model: nn.Module,
    inputs: list[Tensor],
    protocol: EvalProtocol,
    original: tuple[int, int],
    tta: bool,
    batch_size: int,
) -> list[Tensor]:
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
