"""Colour label maps, overlay them on images, draw legends, and write label maps as PNG files, with PIL only.

Used by ``segzoo predict`` (label PNGs, overlays with a legend of the classes present) and by training to draw
validation panels (image / ground truth / prediction with a title and a legend, ``ValidationPanels``) and write
predicted label PNGs (``MaskWriter``). Torch-free at import (the runtime's command line and the demo page draw with
it): tensors are recognised only when torch is already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segzoo._datasets import default_palette
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import torch

__all__ = [
    "colorize",
    "default_palette",
    "denormalize",
    "overlay",
    "overlay_with_legend",
    "save_label_png",
    "side_by_side",
    "validation_panel",
]

Palette = Sequence[Sequence[int]] | np.ndarray


def _palette_array(palette: Palette) -> np.ndarray:
    array = np.asarray(palette, dtype=np.uint8)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"palette must be a list of (R, G, B) colours, got an array of shape {array.shape}")
    return array


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


def _label_array(label_map: np.ndarray | torch.Tensor) -> np.ndarray:
    if _is_tensor(label_map):
        label_map = label_map.detach().cpu().numpy()
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label map must be H×W, got shape {label_map.shape}")
    return label_map.astype(np.int64)


def _image_array(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """An RGB image as an H×W×3 uint8 array (tensors: C×H×W, uint8 or float in 0–1)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if _is_tensor(image):
        import torch

        image = image.detach().cpu()
        if image.is_floating_point():
            image = (image.clamp(0, 1) * 255).round()
        image = image.to(torch.uint8).permute(1, 2, 0).numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be H×W×3 (RGB), got shape {image.shape}")
    return image[:, :, :3].astype(np.uint8)


def denormalize(
    image: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Undoes the model's normalisation: a 3×H×W tensor back to an H×W×3 uint8 array (mean/std on 0–255 scale)."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    pixels = image.detach().float().cpu() * std_t + mean_t
    return pixels.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def colorize(label_map: np.ndarray | torch.Tensor, palette: Palette, ignore_index: int | None = None) -> Image.Image:
    """Colours an H×W label map; labels outside the palette and ``ignore_index`` pixels are black."""
    labels = _label_array(label_map)
    colours = _palette_array(palette)
    valid = (labels >= 0) & (labels < len(colours))
    if ignore_index is not None:
        valid &= labels != ignore_index
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[valid] = colours[labels[valid]]
    return Image.fromarray(rgb)


def overlay(
    image: Image.Image | np.ndarray | torch.Tensor,
    label_map: np.ndarray | torch.Tensor,
    palette: Palette,
    alpha: float = 0.5,
) -> Image.Image:
    """Blends the coloured label map over the image (``alpha`` is the weight of the colours)."""
    rgb = _image_array(image)
    labels = _label_array(label_map)
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"image size {rgb.shape[:2]} and label map size {labels.shape} differ")
    return Image.blend(Image.fromarray(rgb), colorize(labels, palette), alpha)


def save_label_png(label_map: np.ndarray | torch.Tensor, path: str | Path, palette: Palette, num_classes: int) -> None:
    """Writes an H×W label map as a PNG of class indices: 8-bit with ``palette`` as the file's colour table (viewers
    show colours, readers get the indices) when the classes fit in 256 values, else 16-bit grayscale."""
    labels = _label_array(label_map)
    if num_classes <= 256:
        image = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P
        flat = [int(v) for colour in list(palette)[:256] for v in colour]
        image.putpalette(flat + [0] * (768 - len(flat)))  # a full table: every 8-bit index has a colour
    else:
        image = Image.fromarray(labels.astype(np.uint16))
    image.save(path, format="PNG")  # also into a file object (the demo page's download)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def overlay_with_legend(
    image: Image.Image | np.ndarray | torch.Tensor,
    label_map: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None,
    palette: Palette,
    alpha: float = 0.5,
) -> Image.Image:
    """The overlay with a legend on its right: a colour swatch and name for each class present in the label map."""
    labels = _label_array(label_map)
    colours = _palette_array(palette)
    blended = overlay(image, labels, colours, alpha)
    font_size = max(10, min(24, blended.height // 30))
    legend = _legend(_legend_entries(labels, class_names, colours), _font(font_size), font_size)
    canvas = Image.new("RGB", (blended.width + legend.width, max(blended.height, legend.height)), (255, 255, 255))
    canvas.paste(blended, (0, 0))
    canvas.paste(legend, (blended.width, 0))
    return canvas


def _legend_entries(
    labels: np.ndarray, class_names: Sequence[str] | None, colours: np.ndarray
) -> list[tuple[tuple[int, int, int], str]]:
    """(colour, name) of each class present in ``labels``, in label order."""
    present = [int(c) for c in np.unique(labels) if 0 <= c < len(colours)]
    return [
        (
            tuple(int(v) for v in colours[c]),
            class_names[c] if class_names is not None and c < len(class_names) else f"class {c}",
        )
        for c in present
    ]


def _legend(entries: Sequence[tuple[tuple[int, int, int], str]], font, font_size: int) -> Image.Image:
    """A white column holding a colour swatch and a name per entry."""
    pad, swatch, row = font_size // 2, font_size, font_size + font_size // 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((measure.textbbox((0, 0), name, font=font)[2] for _, name in entries), default=0)
    legend = Image.new("RGB", (pad + swatch + pad + text_width + pad, pad + row * len(entries) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    for i, (colour, name) in enumerate(entries):
        y = pad + i * row
        draw.rectangle([pad, y, pad + swatch - 1, y + swatch - 1], fill=colour, outline=0)
        draw.text((pad + swatch + pad, y), name, fill=(0, 0, 0), font=font)
    return legend


def side_by_side(
    image: Image.Image | np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    ignore_index: int = 255,
    gap: int = 4,
) -> Image.Image:
    """Input, ground truth and prediction in one row, for logging; ``ignore_index`` pixels of the ground truth are
    black."""
    panels = [
        Image.fromarray(_image_array(image)),
        colorize(gt, palette, ignore_index=ignore_index),
        colorize(pred, palette),
    ]
    width, height = panels[0].size
    for panel in panels[1:]:
        if panel.size != (width, height):
            raise ValueError(f"image, ground truth and prediction sizes differ: {[p.size for p in panels]}")
    canvas = Image.new("RGB", (3 * width + 2 * gap, height), (255, 255, 255))
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * (width + gap), 0))
    return canvas


def validation_panel(
    image: Image.Image | np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    class_names: Sequence[str] | None = None,
    title: str = "",
    ignore_index: int = 255,
    height: int = 320,
) -> Image.Image:
    """A panel to look at one validation image: the image, its ground truth and the prediction (:func:`side_by_side`)
    at ``height`` pixels (label maps scaled without blending classes), under a title (the image's name) and column
    captions, with a legend of the classes present in either map in their colours (and black for ignored pixels)."""
    rgb, gt, pred = _image_array(image), _label_array(gt), _label_array(pred)
    if not rgb.shape[:2] == gt.shape == pred.shape:
        raise ValueError(f"image, ground truth and prediction sizes differ: {rgb.shape[:2]}, {gt.shape}, {pred.shape}")
    width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
    rows = np.minimum((np.arange(height) + 0.5) * rgb.shape[0] / height, rgb.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * rgb.shape[1] / width, rgb.shape[1] - 1).astype(int)
    resized = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    gap = 8
    strip = side_by_side(resized, gt[np.ix_(rows, cols)], pred[np.ix_(rows, cols)], palette, ignore_index, gap=gap)

    font_size = max(12, min(20, height // 16))
    font, pad = _font(font_size), font_size // 2
    colours = _palette_array(palette)
    entries = _legend_entries(np.concatenate([gt[gt != ignore_index], pred.ravel()]), class_names, colours)
    if (gt == ignore_index).any():
        entries.append(((0, 0, 0), "ignored"))
    legend = _legend(entries, font, font_size)
    top = pad + 2 * (font_size + pad)  # the title, then the column captions
    canvas = Image.new("RGB", (strip.width + legend.width, top + max(strip.height, legend.height) + pad), "white")
    canvas.paste(strip, (0, top))
    canvas.paste(legend, (strip.width, top - pad))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), title, fill=(0, 0, 0), font=font)
    for i, caption in enumerate(("image", "ground truth", "prediction")):
        draw.text((i * (width + gap) + pad, pad + font_size + pad), caption, fill=(90, 90, 90), font=font)
    return canvas
