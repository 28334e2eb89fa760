"""Procedurally generated segmentation scenes for smoke tests, tutorials and quick experiments.

Each class has its own colour and texture (stripes, checks, dots, ...); class 0 is a textured background and the
other classes are drawn as rectangles, ellipses and triangles of random size and position. The shape is not tied to
the class, so a model has to learn colour and texture, which a small model does within minutes on a CPU.
"""

from __future__ import annotations

import colorsys
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from segzoo.data._base import SegmentationDataModule
from segzoo.data._dataset import apply_transform
from segzoo.data._transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform

SHAPES = ("rectangle", "ellipse", "triangle")
_PATTERNS = ("plain", "horizontal", "vertical", "diagonal", "checks", "dots")


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """Colour of each class: a grey-blue background, then hues spread around the colour wheel.

    These are the scenes' pixel colours, so also the DataModule's palette; not ``default_palette``, whose colours
    would change the scenes (and the quickstart's measured results in the README).
    """
    colours = [(90, 100, 110)]
    for k in range(1, num_classes):
        hue = (k - 1) / max(num_classes - 1, 1)
        lightness = 0.5 if k % 2 else 0.35
        r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.85)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def class_texture(label: int, size: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A ``size`` x ``size`` x 3 float texture for a class: its colour modulated by a class-specific pattern."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = 4 + 2 * (label // len(_PATTERNS))  # classes sharing a pattern differ in period
    phase = 2 * np.pi / period
    pattern = _PATTERNS[label % len(_PATTERNS)] if label else "diagonal"
    if pattern == "plain":
        wave = np.zeros_like(x)
    elif pattern == "horizontal":
        wave = np.sin(y * phase)
    elif pattern == "vertical":
        wave = np.sin(x * phase)
    elif pattern == "diagonal":
        wave = np.sin((x + y) * phase / 2)
    elif pattern == "checks":
        wave = np.sign(np.sin(x * phase) * np.sin(y * phase))
    else:  # dots
        wave = (np.sin(x * phase) * np.sin(y * phase) > 0.5).astype(np.float32) * 2 - 1
    strength = 0.15 if label == 0 else 0.3
    return np.asarray(colour, dtype=np.float32) * (1 + strength * wave)[..., None]


def draw_shape(mask: np.ndarray, label: int, rng: np.random.Generator) -> None:
    """Draw one random rectangle, ellipse or triangle of class ``label`` onto ``mask`` in place."""
    size = mask.shape[0]
    kind = SHAPES[rng.integers(len(SHAPES))]
    cy, cx = rng.integers(0, size, 2)
    hy, hx = rng.integers(size // 10, size // 4 + 1, 2)
    if kind == "rectangle":
        cv2.rectangle(mask, (int(cx - hx), int(cy - hy)), (int(cx + hx), int(cy + hy)), label, thickness=-1)
    elif kind == "ellipse":
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(mask, (int(cx), int(cy)), (int(hx), int(hy)), angle, 0, 360, label, thickness=-1)
    else:  # corners roughly 120 degrees apart, so triangles are never degenerate slivers
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        radius = max(hx, hy)
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1).astype(np.int32)
        cv2.fillPoly(mask, [points], label)


def make_scene(
    rng: np.random.Generator, textures: np.ndarray, num_shapes: tuple[int, int] = (3, 7), noise_std: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic (image, mask) pair.

    Args:
        rng: Random generator (determines the scene).
        textures: Per-class textures, shape num_classes x size x size x 3.
        num_shapes: Range (low inclusive, high exclusive) of the number of shapes.
        noise_std: Std of the Gaussian pixel noise on the 0-255 scale.

    Returns:
        An RGB ``uint8`` image (size x size x 3) and a ``uint8`` mask (size x size).
    """
    num_classes, size = textures.shape[0], textures.shape[1]
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(*num_shapes)):
        draw_shape(mask, int(rng.integers(1, num_classes)), rng)
    rows, cols = np.indices(mask.shape)
    image = textures[mask, rows, cols]
    image = image * rng.uniform(0.85, 1.15) + rng.normal(0.0, noise_std, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


class SyntheticSegmentationDataset(Dataset):
    """In-memory synthetic scenes; sample ``i`` depends only on ``seed`` and ``i``.

    Args:
        num_samples: Number of scenes.
        num_classes: Number of classes including the background (class 0); at least 2.
        image_size: Side of the square images.
        seed: Seed of the scenes.
        transform: albumentations ``Compose`` ending with ``ToTensorV2``; default: none, the evaluation items
            (``uint8`` image and mask as generated, see :func:`~segzoo.data.build_eval_transform`).
        noise_std: Std of the Gaussian pixel noise on the 0-255 scale.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int = 4,
        image_size: int = 128,
        seed: int = 0,
        transform: Any = None,
        noise_std: float = 8.0,
    ):
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background + one shape class), got {num_classes}.")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}.")
        self.num_classes = num_classes
        self.transform = transform if transform is not None else build_eval_transform()
        colours = class_colours(num_classes)
        textures = np.stack([class_texture(k, image_size, colours[k]) for k in range(num_classes)])
        self.scenes = [
            make_scene(np.random.default_rng([seed, index]), textures, noise_std=noise_std)
            for index in range(num_samples)
        ]

    def __len__(self) -> int:
        return len(self.scenes)

    def load_sample(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The raw ``uint8`` image, mask and name of scene ``index``."""
        image, mask = self.scenes[index]
        return image, mask, f"synthetic_{index:05d}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        return apply_transform(self.transform, *self.load_sample(index))


class SyntheticDataModule(SegmentationDataModule):
    """DataModule of procedurally generated scenes, deterministic given ``seed``; needs no files.

    Training uses the albumentations pipeline with a mild rescale (ratio 0.75-1.25), crop back to ``image_size``,
    horizontal flip and normalisation (no photometric distortion: colour is what tells the classes apart).
    Validation and test images are used as generated.

    Args:
        num_classes: Number of classes including the background.
        image_size: Side of the square images (and of the training crops).
        num_train: Number of training scenes.
        num_val: Number of validation scenes (the test split uses the same scenes).
        batch_size: Training batch size.
        num_workers: DataLoader worker processes.
        seed: Seed of the scenes; the validation scenes use ``seed + 1``.
        noise_std: Std of the Gaussian pixel noise on the 0-255 scale.
        ratio_range: Range of the random training rescale.
        cat_max_ratio: Largest share of one class in a training crop (1 disables the check).
        photometric: Whether to apply mmseg's photometric distortion during training.
        mean: Per-channel RGB mean on the 0-255 scale.
        std: Per-channel RGB std on the 0-255 scale.
    """

    def __init__(
        self,
        num_classes: int = 4,
        image_size: int = 128,
        num_train: int = 256,
        num_val: int = 32,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        noise_std: float = 8.0,
        ratio_range: tuple[float, float] = (0.75, 1.25),
        cat_max_ratio: float = 1.0,
        photometric: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ):
        super().__init__(
            crop_size=image_size,
            scale=(image_size, image_size),
            eval_scale=None,
            ratio_range=ratio_range,
            cat_max_ratio=cat_max_ratio,
            batch_size=batch_size,
            num_workers=num_workers,
            mean=mean,
            std=std,
            photometric=photometric,
        )
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_train = num_train
        self.num_val = num_val
        self.seed = seed
        self.noise_std = noise_std

    def build_dataset(self, split: str, transform: Any) -> SyntheticSegmentationDataset:
        num_samples, seed = (self.num_train, self.seed) if split == "train" else (self.num_val, self.seed + 1)
        return SyntheticSegmentationDataset(
            num_samples, self.num_classes, self.image_size, seed, transform, noise_std=self.noise_std
        )

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        names = ["background"] + [f"shape_{k}" for k in range(1, self.num_classes)]
        return names, class_colours(self.num_classes)
