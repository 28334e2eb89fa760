"""``segzoo predict`` / ``segzoo list`` on tiny random models (the drawing they use: inference/test_visualize.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo._cli import main
from segzoo.inference import predict


@pytest.fixture
def images(tmp_path):
    """Two small PNGs in a folder (one in a subfolder) and one grayscale PNG outside it."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(folder / "street.png")
    Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)).save(folder / "sub" / "room.v2.png")
    gray = tmp_path / "gray.png"
    Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8)).save(gray)
    return folder, gray


def test_predict_writes_label_maps_and_overlays(images, tmp_path, capsys):
    folder, gray = images
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="grayscale"):
        status = main(
            ["predict", "--arch", "segformer-test", "--num-classes", "5", str(folder), str(gray), "--out", str(out)]
        )
    assert status == 0
    expected = {"street": (56, 40), "sub/room.v2": (47, 33), "gray": (36, 36)}
    for stem, size in expected.items():
        labels = Image.open(out / f"{stem}.png")
        assert labels.mode == "P" and labels.size == size
        assert np.asarray(labels).max() < 5
        overlay_image = Image.open(out / f"{stem}_overlay.png")
        assert overlay_image.mode == "RGB"
        assert overlay_image.height >= size[1] and overlay_image.width > size[0]  # legend panel on the right
        legend = np.asarray(overlay_image)[:, size[0] :]
        assert (legend != 255).any()  # swatches and names drawn on the white panel
    assert "wrote 3 prediction(s)" in capsys.readouterr().err


def test_predict_slide_and_tta_options(images, tmp_path):
    folder, _ = images
    out = tmp_path / "out"
    args = ["predict", "--arch", "segmenter-test-linear", "--num-classes", "3", str(folder / "street.png")]
    args += ["--out", str(out), "--mode", "slide", "--crop-size", "32", "--stride", "24", "--tta", "--no-overlay"]
    assert main(args) == 0
    assert Image.open(out / "street.png").size == (56, 40)
    assert not (out / "street_overlay.png").exists()


def test_predict_reports_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status = main(["predict", "--arch", "segformer-test", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "holds no images" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert main(["predict", "--arch", "segformer-test", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["predict", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "--model" in capsys.readouterr().err


def test_predict_loads_a_local_checkpoint_with_arch(images, tmp_path):
    from safetensors.torch import save_file

    folder, _ = images
    model = segzoo.create_model("segformer-test", num_classes=4)
    state = model.state_dict()
    for name in model.class_specific_parameters():  # a classifier that always prefers class 2
        state[name] = torch.tensor([0.0, 0.0, 5.0, 0.0]) if name.endswith("bias") else torch.zeros_like(state[name])
    save_file(state, tmp_path / "weights.safetensors")
    out = tmp_path / "out"
    args = ["predict", "--arch", "segformer-test", "--checkpoint", str(tmp_path / "weights.safetensors")]
    assert main([*args, str(folder / "street.png"), "--out", str(out)]) == 0
    assert (np.asarray(Image.open(out / "street.png")) == 2).all()


def test_predict_with_a_saved_model_folder_uses_its_classes_and_palette(images, tmp_path):
    from segzoo import save_pretrained

    folder, _ = images
    model = segzoo.create_model("segformer-test", num_classes=150)
    cfg = segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()  # keep-ratio resize to 512, ADE names/palette
    model.pretrained_cfg = cfg
    save_pretrained(model, tmp_path / "tiny-ade", cfg)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tmp_path / "tiny-ade"), str(folder / "street.png"), "--out", str(out)]) == 0
    labels = Image.open(out / "street.png")
    assert labels.size == (56, 40)
    np.testing.assert_array_equal(np.asarray(labels), predict(model, folder / "street.png"))
    legend = {tuple(c) for c in np.asarray(Image.open(out / "street_overlay.png"))[:, 56:].reshape(-1, 3).tolist()}
    for label in np.unique(np.asarray(labels)):
        assert tuple(cfg["palette"][label]) in legend


def test_predict_refuses_two_inputs_with_the_same_output_name(images, tmp_path, capsys):
    folder, _ = images
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "street.png").write_bytes((folder / "street.png").read_bytes())
    args = ["predict", "--arch", "segformer-test", str(folder / "street.png"), str(other / "street.png")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "would both be written as street.png" in capsys.readouterr().err


def test_list_prints_architectures(capsys):
    assert main(["list", "*-test*"]) == 0
    printed = capsys.readouterr().out
    assert "segformer-test" in printed and "setr-naive-b16" not in printed
    assert main(["list", "segformer-b0*"]) == 0
    printed = capsys.readouterr().out
    assert "  segformer-b0\n" in printed and "checkpoints (segzoo.load):\n" in printed and "segformer-b0-ade" in printed
    assert "segmenter" not in printed
