"""Callers of one helper behave alike: the palette of a DataModule without one, label PNGs of training and of
``segzoo predict``, images read upright by training and prediction, the image files both look for, sizes given as an
int or a pair; the Pascal Context palettes are the ADE20K colours. (Where each helper lives is the import contract's
business: pyproject's ``[tool.importlinter]``.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo._datasets as datasets
import segzoo._images as images
import segzoo._preprocessing as preprocessing
from segzoo.inference import _tensor, _visualize

# --- Pascal Context palettes ----------------------------------------------------------------------------------------


def test_pascal_context_palettes_are_the_ade20k_colours():
    assert datasets.PASCAL_CONTEXT_60_PALETTE == datasets.ADE20K_PALETTE[:60]
    assert datasets.PASCAL_CONTEXT_59_PALETTE == datasets.ADE20K_PALETTE[1:60]
    # mmseg's PascalContextDataset59 / PascalContextDataset palettes begin so
    assert datasets.PASCAL_CONTEXT_59_PALETTE[:3] == ((180, 120, 120), (6, 230, 230), (80, 50, 50))
    assert datasets.PASCAL_CONTEXT_60_PALETTE[:2] == ((120, 120, 120), (180, 120, 120))
    assert datasets.PASCAL_CONTEXT_60_PALETTE[-1] == datasets.PASCAL_CONTEXT_59_PALETTE[-1] == (31, 0, 255)


# --- one palette generator ------------------------------------------------------------------------------------------


def test_datamodules_without_a_published_palette_use_default_palette(tmp_path):
    from segzoo.data import FolderDataModule

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
    dm = FolderDataModule(tmp_path, classes=["a", "b", "c"])
    assert dm.palette == _visualize.default_palette(3)


# --- one label-PNG writer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [4, 300])
def test_mask_writer_writes_the_files_segzoo_predict_writes(tmp_path, num_classes):
    from segzoo.training import MaskWriter

    labels = torch.tensor([[0, 3, 1], [2, num_classes - 1, 0]])
    palette = _visualize.default_palette(num_classes)
    module = SimpleNamespace(num_classes=num_classes, palette=lambda: palette)
    writer = MaskWriter(tmp_path / "writer")
    writer.write_on_batch_end(None, module, labels[None], None, {"name": ["x.jpg"]}, 0)
    _visualize.save_label_png(labels.numpy(), tmp_path / "cli.png", palette, num_classes)
    assert (tmp_path / "writer" / "x.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    written = Image.open(tmp_path / "cli.png")
    assert written.mode == ("P" if num_classes <= 256 else "I;16")
    np.testing.assert_array_equal(np.asarray(written), labels.numpy())
    if num_classes <= 256:
        assert written.getpalette()[:6] == [*palette[0], *palette[1]] and len(written.getpalette()) == 768


# --- one image reader, one extension list -----------------------------------------------------------------------


def _rotated_jpeg(path: Path) -> Path:
    """A 20 x 40 (H x W) JPEG whose EXIF orientation (6) says: turn 90° clockwise to show it upright (40 x 20)."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (250, 10, 10)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, quality=95, exif=exif)
    return path


def test_training_and_prediction_read_images_upright_the_same_way(tmp_path):
    from segzoo.data import SegmentationDataset, read_image

    photo = _rotated_jpeg(tmp_path / "photo.jpg")
    array = read_image(photo)
    assert array.shape == (40, 20, 3)
    np.testing.assert_array_equal(array, np.asarray(images.load_image(photo).convert("RGB")))

    upright_mask = tmp_path / "upright.png"
    Image.fromarray(np.zeros((40, 20), np.uint8)).save(upright_mask)
    image, mask, _ = SegmentationDataset([(photo, upright_mask)], num_classes=2).load_sample(0)
    assert image.shape[:2] == mask.shape == (40, 20)

    stored_mask = tmp_path / "stored.png"  # drawn on the stored (unrotated) pixels: refused, naming both files
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(stored_mask)
    with pytest.raises(ValueError, match=r"photo\.jpg.*stored\.png"):
        SegmentationDataset([(photo, stored_mask)], num_classes=2).load_sample(0)


def test_folder_datasets_and_predict_look_for_the_same_image_files(tmp_path):
    from segzoo.data import _folder

    assert ".gif" in images.IMAGE_EXTENSIONS
    for suffix in ("png", "JPG", "gif"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"x_{suffix.lower()}.{suffix}")
    (tmp_path / "notes.txt").write_text("not an image")
    assert sorted(_folder.index_images(tmp_path).values()) == images.list_images(tmp_path)


# --- sizes, statistics ----------------------------------------------------------------------------------------------


def test_one_int_or_pair_parser_for_user_given_sizes():
    from segzoo.data import build_train_transform

    with pytest.raises(ValueError, match="crop_size must be an int or a pair"):
        build_train_transform((32, 32, 3), (64, 32))
    with pytest.raises(ValueError, match="crop_size must be an int or a pair"):
        _tensor.slide_inference(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), (4, 4, 4), 2)


def test_denormalize_defaults_to_the_base_layers_statistics():
    defaults = _visualize.denormalize.__defaults__
    assert defaults == (preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD)
