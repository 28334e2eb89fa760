"""Image files reach the network as the same pixels in training and in ``predict`` (16-bit and float files
included), folders are searched through symbolic links, and ``segzoo predict`` names and skips the images it cannot
read or predict instead of stopping at the first."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from segzoo._cli import main
from segzoo._images import list_images
from segzoo.data import read_image
from segzoo.inference._inputs import _to_rgb_array

H, W = 24, 40


def _ramp16() -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 65535 // (H * W - 1)).astype(np.uint16)


def _write_16_bit_png(path):
    Image.fromarray(_ramp16()).save(path)  # mode I;16
    return path, _ramp16() >> 8


def _write_16_bit_big_endian_tiff(path):
    Image.frombytes("I;16B", (W, H), _ramp16().astype(">u2").tobytes()).save(path)
    return path, _ramp16() >> 8


def _write_float_tiff(path):
    values = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    Image.fromarray(values).save(path)  # mode F
    return path, np.rint(values * 255)


@pytest.mark.parametrize("writer", [_write_16_bit_png, _write_16_bit_big_endian_tiff, _write_float_tiff])
def test_training_and_predict_read_16_bit_and_float_files_as_the_same_pixels(tmp_path, writer):
    path, expected = writer(tmp_path / ("image.png" if writer is _write_16_bit_png else "image.tif"))
    training = read_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predict notes that it converts grayscale to RGB
        predicting = _to_rgb_array(path)
    assert training.dtype == predicting.dtype == np.uint8
    np.testing.assert_array_equal(training, predicting)
    np.testing.assert_array_equal(training, np.repeat(expected.astype(np.uint8)[:, :, None], 3, axis=2))
    # a uint16 array of the same image is read as its file is
    if writer is not _write_float_tiff:
        np.testing.assert_array_equal(_to_rgb_array(np.repeat(_ramp16()[:, :, None], 3, axis=2)), training)


def test_a_float_file_outside_0_1_is_refused_naming_it(tmp_path):
    path = tmp_path / "raw.tif"
    Image.fromarray(np.full((H, W), 200.0, np.float32)).save(path)
    with pytest.raises(OSError, match=r"raw\.tif.*values \[200, 200\].*0–1"):
        read_image(path)
    with pytest.raises(ValueError, match=r"raw\.tif.*0–1"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _to_rgb_array(path)


def test_image_folders_are_searched_through_symbolic_links(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(elsewhere / "b.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    (photos / "more").symlink_to(elsewhere, target_is_directory=True)
    (photos / "loop").symlink_to(photos, target_is_directory=True)  # a link back up is not followed forever
    (photos / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert list_images(photos) == [photos / "a.png", photos / "gone.png", photos / "more" / "b.png"]


def test_predict_names_and_skips_bad_images_and_writes_the_others(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "c", "e"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"{name}.png")
    (photos / "b.png").write_bytes(b"not a png")  # unreadable
    Image.new("RGB", (20, 20)).save(photos / "d.png")  # too small for MiT
    Image.new("RGB", (300, 1)).save(photos / "f.png")  # 1 px high
    (photos / "g.png").symlink_to(tmp_path / "nowhere.png")  # a link to nothing
    out = tmp_path / "out"
    args = ["predict", "--arch", "segformer-test", "--num-classes", "3", str(photos), "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name, why in (
        ("b", "cannot read image file"),
        ("d", "at least 32×32"),
        ("f", "at least 32×32"),
        ("g", "symbolic link to"),
    ):
        (line,) = [line for line in err.splitlines() if f"skipped {photos / name}.png" in line]
        assert why in line
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png",
        "a_overlay.png",
        "c.png",
        "c_overlay.png",
        "e.png",
        "e_overlay.png",
    ]
    assert "wrote 3 prediction(s)" in err and "4 of 7 image(s) skipped" in err
    assert main(["predict", "--arch", "segformer-test", str(photos / "b.png"), "--out", str(out)]) == 2  # none
