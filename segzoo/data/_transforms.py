"""Joint image + mask transforms for semantic segmentation, written as albumentations 2.x transforms.

The training pipeline follows mmsegmentation (and therefore the SETR, Segmenter and SegFormer papers):

    random keep-ratio rescale (ratio 0.5-2.0 of a base scale) -> random crop with ``cat_max_ratio``
    -> horizontal flip -> photometric distortion -> normalise -> pad to the crop size -> tensor

Given the same random draws, every step gives exactly mmsegmentation 1.2.2's arrays (its ``RandomResize``,
``RandomCrop``, ``RandomFlip``, ``PhotoMetricDistortion`` and ``SegDataPreProcessor``), proven in
``reference/test_transform_parity.py``.

Evaluation samples are not transformed here: validation and test items hold the image as read (``uint8``) and the
mask at its original size (:func:`build_eval_transform`). The model side turns the image into the model's input with
the test pipeline, :class:`segzoo.EvalProtocol` (keep-ratio resize of the ``uint8`` image with OpenCV,
``size_divisor``, normalisation), and brings the logits back to the original size before the argmax
(:func:`segzoo.inference.predict_arrays`, the path ``predict`` takes), so the ground truth is compared as
stored, as in mmsegmentation's test loop.

Images are RGB ``uint8`` arrays of shape H x W x 3, masks ``uint8`` arrays of shape H x W where 255 means "ignore".
Mean and std are given on the 0-255 scale, as in mmsegmentation configs and ``model.pretrained_cfg``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI for updates at import

import albumentations as A
import cv2
import numpy as np

from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, keep_ratio_size, size_pair
from segzoo.data._files import IGNORE_INDEX

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "keep_ratio_size"]  # re-exported: the data layer's users import them here


def _resize_pair(img: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=interpolation)


class KeepRatioRescale(A.DualTransform):
    """Keep-ratio resize to a randomly scaled base ``scale`` (mmsegmentation's ``RandomResize(keep_ratio=True)``).

    As in mmcv, the ratio is ``u * (high - low) + low`` for one uniform draw ``u`` in [0, 1), the target scale is
    ``(int(scale[0] * ratio), int(scale[1] * ratio))`` and the size follows :func:`keep_ratio_size`
    (``mmcv.imrescale``). With ``ratio_range=(1, 1)`` this is the deterministic evaluation resize. Images use
    OpenCV's bilinear and masks its nearest-neighbour interpolation; given the same draw, the output equals mmseg's
    exactly (``reference/test_transform_parity.py``).

    Args:
        scale: Base scale, e.g. ``(2048, 512)`` for ADE20K or ``(2048, 1024)`` for Cityscapes.
        ratio_range: Range of the random ratio.
        p: Probability of applying the transform.
    """

    def __init__(self, scale: Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0), p: float = 1.0):
        super().__init__(p=p)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"scale must be two positive numbers such as (2048, 512), got {scale!r}.")
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"ratio_range must be (low, high) with 0 < low <= high, got {ratio_range!r}.")
        self.scale = tuple(int(s) for s in scale)
        self.ratio_range = tuple(float(r) for r in ratio_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        low, high = self.ratio_range
        ratio = self.py_random.random() * (high - low) + low  # mmcv's formula, so the same draw gives the same ratio
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        out_height, out_width = keep_ratio_size(height, width, target)
        return {"out_height": out_height, "out_width": out_width}

    def apply(self, img: np.ndarray, out_height: int, out_width: int, **params: Any) -> np.ndarray:
        return _resize_pair(img, out_height, out_width, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, out_height: int, out_width: int, **params: Any) -> np.ndarray:
        return _resize_pair(mask, out_height, out_width, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class CatMaxRatioRandomCrop(A.DualTransform):
    """Random crop that avoids crops dominated by one class (mmsegmentation's ``RandomCrop(cat_max_ratio=...)``).

    A window is drawn (top offset, then left offset, each uniform over the valid positions) and checked: it is taken
    when more than one class is present and the largest class covers less than ``cat_max_ratio`` of the labelled
    (non-ignore) pixels. After a failed check a new window is drawn, up to ``max_tries`` checks; as in mmseg, the
    window drawn after the last failed check is taken unchecked (so up to ``max_tries + 1`` windows are drawn).
    ``cat_max_ratio=1`` disables the check. Images smaller than the crop are cropped to their own size on that side;
    pad afterwards (``PadIfNeeded``) to get a fixed size.

    Args:
        height: Crop height.
        width: Crop width.
        cat_max_ratio: Largest allowed share of one class in the crop.
        ignore_index: Mask value that is not counted.
        max_tries: Number of windows checked before one is taken unchecked.
        p: Probability of applying the transform.
    """

    def __init__(
        self,
        height: int,
        width: int,
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        max_tries: int = 10,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if height <= 0 or width <= 0:
            raise ValueError(f"Crop size must be positive, got height={height}, width={width}.")
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1] (1 disables the check), got {cat_max_ratio}.")
        self.height, self.width = int(height), int(width)
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.max_tries = int(max_tries)

    @property
    def targets_as_params(self) -> list[str]:
        return ["mask"]

    def _random_window(self, height: int, width: int) -> tuple[int, int, int, int]:
        top = self.py_random.randint(0, max(height - self.height, 0))
        left = self.py_random.randint(0, max(width - self.width, 0))
        return top, left, min(top + self.height, height), min(left + self.width, width)

    def _is_balanced(self, mask_crop: np.ndarray) -> bool:
        counts = np.bincount(mask_crop.ravel(), minlength=self.ignore_index + 1)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        window = self._random_window(height, width)
        mask = data.get("mask")
        if self.cat_max_ratio < 1 and mask is not None:
            for _ in range(self.max_tries):
                top, left, bottom, right = window
                if self._is_balanced(mask[top:bottom, left:right]):
                    break
                window = self._random_window(height, width)
        return {"window": window}

    def apply(self, img: np.ndarray, window: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        top, left, bottom, right = window
        return img[top:bottom, left:right]

    def apply_to_mask(self, mask: np.ndarray, window: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return self.apply(mask, window)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "cat_max_ratio", "ignore_index", "max_tries")


def _scale_and_shift(channel: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``uint8`` out of ``float32(channel) * alpha + beta``, clipped to 0-255 and truncated (mmseg's ``convert``)."""
    return np.clip(channel.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _through_hsv(img: np.ndarray, channel: int, change: Any) -> np.ndarray:
    """One OpenCV RGB -> HSV -> RGB round trip of a ``uint8`` image, changing one HSV channel on the way."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., channel] = change(hsv[..., channel])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmsegmentation's ``PhotoMetricDistortion`` on an RGB ``uint8`` image, draw for draw.

    Each step happens with probability 0.5, in this order: brightness (add a value drawn from
    ``[-brightness_delta, brightness_delta]``), contrast (multiply by a value in ``contrast_range``; before or after
    the colour steps, chosen at random), saturation (multiply the HSV saturation by a value in
    ``saturation_range``), hue (shift the OpenCV hue, 0-179, by an integer in ``[-hue_delta, hue_delta)``: the upper
    end is excluded, as numpy's ``randint`` excludes it in mmseg). Every step rounds to ``uint8`` as mmseg does
    (clip, then truncate); saturation and hue each make their own OpenCV HSV round trip, which is lossy even for a
    hue shift of 0. The random numbers are drawn in mmseg's order (brightness coin and value, contrast-first coin,
    then the coin and value of each step as it comes), so the same draws give mmseg's output exactly
    (``reference/test_transform_parity.py``); mmseg converts its BGR image with ``BGR2HSV``, which gives the same
    HSV values as ``RGB2HSV`` on the RGB image.

    The parameters of :meth:`apply` are the drawn values, ``None`` for a step that does not happen.

    Args:
        brightness_delta: Largest brightness shift, on the 0-255 scale.
        contrast_range: Range of the contrast factor.
        saturation_range: Range of the saturation factor.
        hue_delta: Largest hue shift in OpenCV hue units (180 = full circle).
        p: Probability of applying the whole transform.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        rng = self.py_random

        def maybe(draw: Any) -> Any:
            return draw() if rng.randint(0, 1) == 1 else None  # mmseg: ``if numpy.random.randint(2)``

        brightness = maybe(lambda: rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = rng.randint(0, 1) == 1
        contrast = maybe(lambda: rng.uniform(*self.contrast_range)) if contrast_first else None
        saturation = maybe(lambda: rng.uniform(*self.saturation_range))
        hue = maybe(lambda: rng.randint(-self.hue_delta, self.hue_delta - 1))
        if not contrast_first:
            contrast = maybe(lambda: rng.uniform(*self.contrast_range))
        return {
            "brightness": brightness,
            "contrast": contrast,
            "contrast_first": contrast_first,
            "saturation": saturation,
            "hue": hue,
        }

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None,
        contrast: float | None,
        contrast_first: bool,
        saturation: float | None,
        hue: int | None,
        **params: Any,
    ) -> np.ndarray:
        if brightness is not None:
            img = _scale_and_shift(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = _scale_and_shift(img, alpha=contrast)
        if saturation is not None:
            img = _through_hsv(img, 1, lambda s: _scale_and_shift(s, alpha=saturation))
        if hue is not None:
            img = _through_hsv(img, 0, lambda h: (h.astype(np.int32) + hue) % 180)
        if not contrast_first and contrast is not None:
            img = _scale_and_shift(img, alpha=contrast)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


class NormalizeMeanStd(A.ImageOnlyTransform):
    """``(image - mean) / std`` in ``float32``, with mean and std on the 0-255 scale: the same operations as
    mmseg's data preprocessor, so the result is identical to it (``A.Normalize`` multiplies by a reciprocal instead
    and differs in the last bit of about 40% of the values).

    Args:
        mean: Per-channel mean on the 0-255 scale.
        std: Per-channel std on the 0-255 scale.
        p: Probability of applying the transform.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], p: float = 1.0):
        super().__init__(p=p)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return (img.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mean", "std")


def normalize(mean: Sequence[float], std: Sequence[float]) -> NormalizeMeanStd:
    """The normalisation step for mean and std given on the 0-255 scale (:class:`NormalizeMeanStd`)."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need one value per RGB channel, got mean={mean!r}, std={std!r}.")
    return NormalizeMeanStd(mean, std)


def build_train_transform(
    crop_size: int | Sequence[int],
    scale: Sequence[int],
    ratio_range: Sequence[float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    photometric: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> A.Compose:
    """The mmsegmentation training pipeline.

    Args:
        crop_size: Crop (height, width), or one int for a square crop.
        scale: Base scale of the random keep-ratio rescale, e.g. ``(2048, 512)``.
        ratio_range: Range of the random rescale ratio.
        cat_max_ratio: Largest share of one class in a crop (1 disables the check).
        mean: Per-channel RGB mean on the 0-255 scale.
        std: Per-channel RGB std on the 0-255 scale.
        photometric: Whether to apply :class:`PhotoMetricDistortion`.
        ignore_index: Mask value of ignored pixels, also used to pad masks.

    Returns:
        A ``Compose`` taking ``image`` (H x W x 3 ``uint8``) and ``mask`` (H x W ``uint8``) and returning a float
        3 x crop_h x crop_w image tensor and a crop_h x crop_w mask tensor.
    """
    crop_h, crop_w = size_pair(crop_size, "crop_size")
    steps: list[A.BasicTransform] = [
        KeepRatioRescale(scale, ratio_range),
        CatMaxRatioRandomCrop(crop_h, crop_w, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        A.HorizontalFlip(p=0.5),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [
        normalize(mean, std),
        # Pad bottom/right after normalising, so padded pixels are 0 in the normalised image (as in mmseg).
        A.PadIfNeeded(
            min_height=crop_h,
            min_width=crop_w,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        ),
        A.ToTensorV2(),
    ]
    return A.Compose(steps)


class KeepOriginal:
    """The evaluation "pipeline" of segzoo's datasets: the image as read (H×W×3 ``uint8``) and the mask at its own
    size, untouched. Scoring resizes and normalises the image itself, through the test pipeline
    (:class:`segzoo.EvalProtocol`), and compares its prediction at the original size with the mask as stored."""

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, **_: Any) -> dict[str, Any]:
        return {"image": image, "mask": mask}

    def __repr__(self) -> str:
        return "KeepOriginal()"


def build_eval_transform() -> KeepOriginal:
    """The evaluation pipeline of segzoo's datasets: none (:class:`KeepOriginal`). Items then hold the ``uint8`` image
    and the mask as stored, which :class:`~segzoo.training.SegmentationTask` (validation, test, predict) scores at
    their own size through the test pipeline; collate them with :func:`segzoo.data.collate_eval` (a list per key:
    sizes differ)."""
    return KeepOriginal()


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Seed a ``Compose`` so that all its transforms draw from one shared random stream.

    ``Compose(seed=...)`` gives every child transform its own generator with the *same* seed, so their random
    decisions are correlated (e.g. flip whenever brightness changes); one shared stream avoids that.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
