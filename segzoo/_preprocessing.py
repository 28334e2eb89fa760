"""A checkpoint's test pipeline as one typed object: how its publisher turned an image into the model's input.

mmsegmentation (and NVlabs SegFormer, built on mmseg 0.x) read the image as ``uint8``, resize that ``uint8`` image with
OpenCV's bilinear filter (``mmcv.imrescale``: keep the aspect ratio, round the size, round the pixels), and only then
normalise in float. Resizing the float tensor instead changes the labels of a fraction of a percent of the pixels,
so :class:`EvalProtocol` resizes with OpenCV on ``uint8`` too. Every evaluation path (``predict``, the DataModules'
validation and test pipelines, ``benchmarks/accuracy.py``, export examples) builds its input through it.

Multi-scale + flip testing differs between mmseg versions, and the published numbers come from one of them:

- ``"mmseg-0.x"`` (``MultiScaleFlipAug``; what trained and scored the mmseg zoo and NVlabs SegFormer): for each
  ratio r the **original** image is resized once, keeping its ratio, to the test scale times r
  (``(int(long·r), int(short·r))``), then rounded to ``size_divisor`` when the pipeline has one (NVlabs'
  ``AlignedResize``);
- ``"mmseg-1.x"`` (``tools/test.py --tta``): the original image is resized by the ratio itself
  (``Resize(scale_factor=r, keep_ratio=True)``), whatever the test scale;
- ``"setr-official"`` (fudan-zvg/SETR's ``*_MS.py`` configs, ``Resize(setr_multi_scale=True)``): the short side
  becomes ``int(short scale · r)`` but at least the window, and the long side follows the image's aspect ratio
  (no long-side limit).

The official Segmenter code (rstrudel/segmenter, ``segm.eval.miou``) runs mmseg 0.x's pipeline (so ``"mmseg-0.x"``),
then one more resize before its sliding windows (``segm.model.utils.resize``): an image whose short side is below the
window is resized, as the normalised float tensor, bilinearly (``align_corners=False``, no antialiasing) so that the
short side equals the window and the long side is ``int(long / short × window)``. ``min_short_side`` is that window.

The pipeline itself is numpy and OpenCV: the torch-free runtime (:mod:`segzoo.runtime`) imports this module too, so
the ONNX runtime and ``predict`` share one implementation of it; only the tensor steps (:meth:`EvalProtocol.normalize`
and the official Segmenter float resize of :meth:`EvalProtocol.__call__`) import torch, when called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "EVAL_MODES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TTA_SCALES",
    "TTA_STYLES",
    "EvalProtocol",
    "keep_ratio_size",
    "size_pair",
    "window_spans",
]

# RGB, 0–255 scale, as in mmsegmentation's data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# mmsegmentation's ``img_ratios`` for multi-scale testing (0.x and 1.x alike).
TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
TTA_STYLES = ("mmseg-0.x", "mmseg-1.x", "setr-official")
EVAL_MODES = ("whole", "slide")


def keep_ratio_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """Size after mmsegmentation's ``Resize(scale=scale, keep_ratio=True)`` (``mmcv.rescale_size``).

    The factor is ``min(long_scale / long_edge, short_scale / short_edge)``, e.g. (2048, 512) resizes the short side
    to 512 unless the long side would then exceed 2048; sizes are rounded half up.
    """
    long_scale, short_scale = max(scale), min(scale)
    factor = min(long_scale / max(height, width), short_scale / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def window_spans(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """Start/end of each sliding window along one axis, with mmsegmentation's grid: the last window is clamped to
    the image, and an axis shorter than the crop gets a single window covering all of it."""
    num = max(size - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(num):
        end = min(i * stride + crop, size)
        spans.append((max(end - crop, 0), end))
    return spans


def size_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int (a square) or a (height, width) pair of ints as a tuple: segzoo's one reader of user-given sizes
    (crops, windows, strides, test scales). The error names the argument ``name``."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if whole(value):
        return value, value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(map(whole, value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or a pair (height, width) of ints, all positive, got {value!r}")


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV bilinear resize of an H×W×C image to ``size`` (height, width): ``uint8`` in, ``uint8`` out, exactly as
    ``mmcv.imresize`` computes it; float images stay float."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _optional_pair(value: Any, name: str) -> tuple[int, int] | None:
    return None if value is None else size_pair(value, name)


@dataclass(frozen=True)
class EvalProtocol:
    """How a checkpoint is evaluated: the test pipeline's resize and normalisation, the inference mode, and the
    multi-scale + flip variant its published numbers used.

    segzoo's one description of a test pipeline: a table row's ``eval`` (``PretrainedCfg.eval``), a model's
    ``eval_protocol`` (kept as ``pretrained_cfg["eval"]`` and written so to ``config.json``), an ONNX file's
    ``segzoo.eval_protocol`` metadata, a training checkpoint's ``eval_protocol`` and a DataModule's ``eval_protocol``
    are all this object, as :meth:`to_dict` writes it and :meth:`from_dict` reads it back.

    Attributes:
        mean: RGB normalisation mean on the 0–255 scale.
        std: RGB normalisation std on the 0–255 scale.
        test_scale: Keep-ratio test resize ``(long, short)`` (mmseg ``Resize(scale=..., keep_ratio=True)``), or
            ``None`` to keep the image size.
        size_divisor: Round the resized image up to a multiple of this (NVlabs ``AlignedResize``).
        mode: ``"whole"`` or ``"slide"``.
        crop: Sliding window ``(height, width)`` (an int: a square).
        stride: Sliding-window stride ``(height, width)`` (an int: a square).
        tta_scales: Ratios of multi-scale testing.
        tta_style: ``"mmseg-0.x"``, ``"mmseg-1.x"`` or ``"setr-official"`` (see the module docstring).
        flip: Add horizontally flipped passes to multi-scale testing.
        min_short_side: After normalising, resize (float, bilinear) an image whose short side is below this so that
            it is this: the official Segmenter code's resize to its window (see the module docstring).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    test_scale: tuple[int, int] | None = None
    size_divisor: int | None = None
    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    tta_scales: tuple[float, ...] = TTA_SCALES
    tta_style: str = "mmseg-0.x"
    flip: bool = True
    min_short_side: int | None = None

    def __post_init__(self):
        if self.mode not in EVAL_MODES:
            raise ValueError(f"unknown inference mode {self.mode!r}; expected one of {EVAL_MODES}")
        if self.tta_style not in TTA_STYLES:
            raise ValueError(f"unknown multi-scale style {self.tta_style!r}; expected one of {TTA_STYLES}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got {self.mean!r} and {self.std!r}")
        for name in ("size_divisor", "min_short_side"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        # one spelling of every value (JSON lists and ints become tuples): equal protocols compare equal
        normalised = {
            "mean": tuple(float(v) for v in self.mean),
            "std": tuple(float(v) for v in self.std),
            "test_scale": _optional_pair(self.test_scale, "test_scale"),
            "crop": _optional_pair(self.crop, "crop"),
            "stride": _optional_pair(self.stride, "stride"),
            "tta_scales": tuple(float(v) for v in self.tta_scales),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if self.mode == "slide" and (self.crop is None or self.stride is None):
            raise ValueError("slide mode needs a window (crop) and a stride, e.g. crop=(512, 512), stride=(341, 341)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists for pairs), as ``config.json``, the ONNX metadata and training checkpoints hold
        them."""
        values = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    @classmethod
    def of(cls, model: Any) -> EvalProtocol:
        """A model's test pipeline: its ``eval_protocol`` (segzoo models), else the ``pretrained_cfg["eval"]`` any
        module may carry, else the defaults (ImageNet statistics, whole image, no resize)."""
        protocol = getattr(model, "eval_protocol", None)
        if isinstance(protocol, EvalProtocol):
            return protocol
        values = (getattr(model, "pretrained_cfg", None) or {}).get("eval")
        return cls.from_dict(values) if values else cls()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalProtocol:
        """The inverse of :meth:`to_dict`: segzoo's one reader of a stored protocol."""
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown test-pipeline key(s) {unknown}; an EvalProtocol has {', '.join(known)}")
        return cls(**values)

    def with_window(self, mode: str | None = None, crop: Any = None, stride: Any = None) -> EvalProtocol:
        """This protocol with the inference mode and sliding window a caller asks for (``predict``'s
        ``mode``/``crop_size``/``stride``, the training module's ``eval_mode``/``eval_crop``/``eval_stride``); what
        is not given stays this protocol's."""
        mode = mode or self.mode
        if mode == "whole":
            return dataclasses.replace(self, mode="whole", crop=None, stride=None)
        if mode != "slide":
            raise ValueError(f"unknown inference mode {mode!r}; expected one of {EVAL_MODES}")
        crop = self.crop if crop is None else size_pair(crop, "crop_size")
        stride = self.stride if stride is None else size_pair(stride, "stride")
        if crop is None or stride is None:
            raise ValueError(
                "slide mode needs a window size and a stride, and this checkpoint has none: pass crop_size=... and "
                "stride=... (e.g. 512 and 341; with train.py set model.eval_crop and model.eval_stride)"
            )
        return dataclasses.replace(self, mode="slide", crop=crop, stride=stride)

    # --- the test pipeline --------------------------------------------------------------------------------------

    def resized_size(self, height: int, width: int, ratio: float | None = None) -> tuple[int, int]:
        """Size of a ``height``×``width`` image after the test resize (``ratio=None``) or the resize of the
        multi-scale pass at ``ratio``, before ``size_divisor``."""
        if ratio is not None and self.tta_style == "mmseg-1.x":
            # Resize(scale_factor=r, keep_ratio=True): the scale is the image size times r, then the keep-ratio rule
            return keep_ratio_size(height, width, (int(width * ratio + 0.5), int(height * ratio + 0.5)))
        if ratio is not None and self.tta_style == "setr-official" and self.test_scale is not None:
            # SETR's Resize(setr_multi_scale=True): a scale of the image's own aspect with the short side
            # max(int(short · r), window), then mmcv's keep-ratio rule with it
            short = max(int(min(self.test_scale) * ratio), min(self.crop or (0,)))
            scale = (short * height / width, short) if height > width else (short, short * width / height)
            return keep_ratio_size(height, width, scale)
        ratio = 1.0 if ratio is None else ratio
        if self.test_scale is None:
            return int(height * ratio + 0.5), int(width * ratio + 0.5)
        return keep_ratio_size(height, width, tuple(int(side * ratio) for side in self.test_scale))

    def resize(self, image: np.ndarray, ratio: float | None = None) -> np.ndarray:
        """The test pipeline's resize of an H×W×C image (``ratio=None``), or that of the multi-scale pass at
        ``ratio``: the ``uint8`` steps (keep-ratio resize, ``size_divisor``), before normalisation."""
        image = resize_image(image, self.resized_size(*image.shape[:2], ratio))
        if self.size_divisor:
            image = resize_image(image, self._divisible(*image.shape[:2]))
        return image

    def _divisible(self, height: int, width: int) -> tuple[int, int]:
        d = self.size_divisor
        return (-(-height // d) * d, -(-width // d) * d) if d else (height, width)

    def short_side_size(self, height: int, width: int) -> tuple[int, int]:
        """Size after the official Segmenter code's float resize (``segm.model.utils.resize``): unchanged unless the
        short side is below ``min_short_side``; then that side becomes ``min_short_side`` and the other
        ``int(long / short × min_short_side)``."""
        side = self.min_short_side
        if side is None or min(height, width) >= side:
            return height, width
        if height < width:
            return side, int(width / height * side)
        return int(height / width * side), side

    def input_size(self, height: int, width: int, ratio: float | None = None) -> tuple[int, int]:
        """Size of the model input made from a ``height``×``width`` image (every resize of the pipeline)."""
        return self.short_side_size(*self._divisible(*self.resized_size(height, width, ratio)))

    def normalize_array(self, image: np.ndarray) -> np.ndarray:
        """An H×W×3 image on the 0–255 scale as the normalised, contiguous 1×3×H×W float32 array (the ONNX input)."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normalised = (np.asarray(image, dtype=np.float32) - mean) / std  # float32 throughout, as PyTorch computes it
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])

    def normalize(self, image: np.ndarray) -> Tensor:
        """An H×W×3 image on the 0–255 scale as the normalised 1×3×H×W float32 tensor."""
        import torch

        return torch.from_numpy(self.normalize_array(image))

    def prepare_array(self, image: np.ndarray, ratio: float | None = None) -> np.ndarray:
        """:meth:`__call__` as a numpy array: what the runtime feeds an exported model. The official Segmenter float
        resize is OpenCV's bilinear filter here, which for these upscales computes PyTorch's ``align_corners=False``
        resize up to float rounding."""
        array = self.normalize_array(self.resize(image, ratio))
        size = self.short_side_size(*array.shape[-2:])
        if size != tuple(array.shape[-2:]):
            resized = cv2.resize(array[0].transpose(1, 2, 0), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            array = np.ascontiguousarray(resized.transpose(2, 0, 1)[None])
        return array

    def __call__(self, image: np.ndarray, ratio: float | None = None) -> Tensor:
        """Resize (for the multi-scale pass at ``ratio``, if given) and normalise one H×W×3 image: the model's
        input."""
        tensor = self.normalize(self.resize(image, ratio))
        size = self.short_side_size(*tensor.shape[-2:])
        if size != tuple(tensor.shape[-2:]):  # the official Segmenter code resizes the normalised tensor
            import torch.nn.functional as F

            tensor = F.interpolate(tensor, size, mode="bilinear", align_corners=False)
        return tensor

    def tta_inputs(self, image: np.ndarray, scales: Sequence[float] | None = None) -> list[Tensor]:
        """The model inputs of multi-scale testing, one per ratio, each resized once from the original image."""
        return [self(image, ratio) for ratio in (self.tta_scales if scales is None else scales)]
