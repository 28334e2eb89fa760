"""Whole, sliding-window and TTA inference, preprocessing and predict, on toy models with known outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segzoo import EvalProtocol
from segzoo._images import list_images
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, keep_ratio_size
from segzoo.inference import inference, predict
from segzoo.inference._inputs import preprocess
from segzoo.inference._tensor import multiscale_flip_inference, slide_inference, whole_inference

from support.inference_toys import PixelModel, RampModel, WindowMeanModel


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# --- sliding window ----------------------------------------------------------------------------------------------


def test_slide_with_one_window_equals_whole():
    model = WindowMeanModel()  # output depends on the whole input, so any other window grid would differ
    images = _images(2, 32, 32)
    torch.testing.assert_close(slide_inference(model, images, crop_size=32, stride=32), whole_inference(model, images))


@pytest.mark.parametrize(("height", "width"), [(64, 64), (67, 93), (20, 100)])
def test_slide_of_pixelwise_model_equals_whole(height, width):
    model = PixelModel()
    images = _images(2, height, width)
    with torch.no_grad():
        slide = slide_inference(model, images, crop_size=32, stride=24, batch_size=3)
        whole = whole_inference(model, images)
    assert slide.shape == (2, 4, height, width)
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=1e-5)


def test_overlapping_windows_are_averaged():
    # One row of 5 pixels, windows of 3 every 2: [0, 3) and [2, 5); pixel 2 is covered by both.
    images = torch.zeros(1, 3, 1, 5)
    images[0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    out = slide_inference(WindowMeanModel(), images, crop_size=(1, 3), stride=(1, 2))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0]))


@pytest.mark.parametrize(("height", "width"), [(100, 100), (67, 93)])
def test_count_map_covers_every_pixel_once_on_average(height, width):
    # Constant image: every window predicts the same value, so the average equals it only if the count map is right.
    images = torch.full((1, 3, height, width), 0.7)
    out = slide_inference(WindowMeanModel(), images, crop_size=40, stride=30)
    torch.testing.assert_close(out, torch.full_like(out, 0.7))


def test_windows_follow_mmseg_grid_and_batch_size():
    model = WindowMeanModel()
    # 100 px, crop 40, stride 30: (100 - 40 + 29) // 30 + 1 = 3 windows per axis, 9 per image.
    slide_inference(model, _images(2, 100, 100), crop_size=40, stride=30, batch_size=4)
    assert [shape[0] for shape in model.calls] == [4, 4, 1, 4, 4, 1]
    assert all(shape[2:] == (40, 40) for shape in model.calls)


def test_image_smaller_than_crop_runs_whole():
    model = WindowMeanModel()
    images = _images(1, 20, 30)
    out = slide_inference(model, images, crop_size=64, stride=48)
    assert model.calls == [(1, 3, 20, 30)]
    torch.testing.assert_close(out, whole_inference(WindowMeanModel(), images))


def test_slide_rejects_bad_settings():
    with pytest.raises(ValueError, match="positive"):
        slide_inference(PixelModel(), _images(1, 8, 8), crop_size=4, stride=0)
    with pytest.raises(ValueError, match="crop_size"):
        slide_inference(PixelModel(), _images(1, 8, 8), crop_size=(4, 4, 4), stride=2)


# --- test-time augmentation --------------------------------------------------------------------------------------


def test_flip_tta_of_flip_equivariant_model_is_unchanged():
    model = PixelModel()
    images = _images(2, 24, 36)
    with torch.no_grad():
        out = multiscale_flip_inference(model, images, scales=(1.0,), flip=True)
        expected = F.log_softmax(model(images), dim=1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_multiscale_tta_of_constant_image_is_unchanged():
    model = PixelModel()
    images = torch.ones(1, 3, 30, 40) * torch.tensor([0.3, -1.0, 2.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = multiscale_flip_inference(model, images)  # default scales 0.5–1.75 and flip
        expected = F.log_softmax(model(images), dim=1)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_tta_averages_probabilities_not_logits():
    images = torch.zeros(1, 3, 4, 9)
    out = multiscale_flip_inference(RampModel(), images, scales=(1.0,), flip=True)
    ramp = torch.linspace(0.0, 4.0, 9)
    expected = (torch.sigmoid(ramp) + torch.sigmoid(ramp.flip(0))) / 2  # softmax([r, 0])[0] == sigmoid(r)
    torch.testing.assert_close(out.exp()[0, 0, 0], expected)
    # Averaging logits would give sigmoid(2) everywhere instead.
    assert not torch.allclose(out.exp()[0, 0, 0], torch.full((9,), torch.sigmoid(torch.tensor(2.0)).item()))


def test_tta_in_slide_mode_matches_whole_for_pixelwise_model():
    model = PixelModel()
    images = _images(1, 67, 93)
    with torch.no_grad():
        slide = multiscale_flip_inference(model, images, (0.5, 1.0), mode="slide", crop_size=32, stride=24)
        whole = multiscale_flip_inference(model, images, (0.5, 1.0), mode="whole")
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=1e-5)


def test_inference_dispatches_on_the_protocol():
    model = WindowMeanModel()
    images = _images(1, 50, 70)
    slide = inference(model, images, EvalProtocol(mode="slide", crop=32, stride=16))
    torch.testing.assert_close(slide, slide_inference(model, images, 32, 16))
    torch.testing.assert_close(inference(model, images), whole_inference(model, images))
    assert not torch.allclose(slide, whole_inference(model, images))
    tta = inference(model, images, EvalProtocol(tta_scales=(1.0,), flip=False), tta=True)
    torch.testing.assert_close(tta, whole_inference(model, images).log_softmax(dim=1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="slide mode needs a window"):
        EvalProtocol(mode="slide")
    with pytest.raises(ValueError, match="unknown inference mode 'tiles'"):
        EvalProtocol(mode="tiles")


# --- preprocessing -----------------------------------------------------------------------------------------------


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


def test_preprocess_accepts_path_pil_numpy_and_tensors(rgb, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    reference, size = preprocess(rgb)
    assert reference.shape == (1, 3, 37, 53) and size == (37, 53)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for image in (path, str(path), Image.fromarray(rgb), chw, chw.float() / 255, torch.from_numpy(rgb)):
        tensor, size = preprocess(image)
        assert size == (37, 53)
        torch.testing.assert_close(tensor, reference, atol=1e-4, rtol=0)


def test_preprocess_normalises_with_the_checkpoint_statistics(rgb):
    tensor, _ = preprocess(rgb, EvalProtocol(mean=(0, 0, 0), std=(255, 255, 255)))
    torch.testing.assert_close(tensor[0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    tensor, _ = preprocess(rgb, None)  # ImageNet statistics by default
    expected = (rgb[..., 1].astype(np.float32) - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    np.testing.assert_allclose(tensor[0, 1].numpy(), expected, atol=1e-5)


def test_preprocess_converts_grayscale_with_a_warning(rgb):
    gray = rgb[..., 0]
    for image in (Image.fromarray(gray), gray):
        with pytest.warns(UserWarning, match="grayscale"):
            tensor, _ = preprocess(image, EvalProtocol(mean=(0, 0, 0), std=(1, 1, 1)))
        assert tensor.shape == (1, 3, 37, 53)
        for channel in range(3):
            np.testing.assert_array_equal(tensor[0, channel].numpy(), gray.astype(np.float32))


def test_preprocess_drops_alpha_with_a_warning(rgb):
    rgba = np.concatenate([rgb, np.full((37, 53, 1), 128, np.uint8)], axis=2)
    reference, _ = preprocess(rgb)
    for image in (Image.fromarray(rgba), rgba):
        with pytest.warns(UserWarning, match="alpha"):
            tensor, _ = preprocess(image)
        torch.testing.assert_close(tensor, reference)


def test_preprocess_rejects_two_channels(rgb):
    with pytest.raises(ValueError, match="2 channels"):
        preprocess(rgb[..., :2])
    with pytest.raises(ValueError, match="2 channels"):
        preprocess(torch.zeros(2, 20, 20))
    with pytest.raises(TypeError, match="unsupported image type"):
        preprocess([[1, 2]])


def test_preprocess_applies_the_keep_ratio_test_resize(rgb):
    image = np.zeros((40, 100, 3), np.uint8)
    tensor, size = preprocess(image, EvalProtocol(test_scale=(2048, 32)))  # factor min(2048 / 100, 32 / 40) = 0.8
    assert tensor.shape == (1, 3, 32, 80) and size == (40, 100)
    tensor, size = preprocess(image, EvalProtocol(test_scale=(2048, 32), size_divisor=32))  # NVlabs rounds up
    assert tensor.shape == (1, 3, 32, 96) and size == (40, 100)
    assert keep_ratio_size(512, 4096, (2048, 512)) == (256, 2048)  # long side capped at 2048
    assert keep_ratio_size(375, 500, (2048, 512)) == (512, 683)  # short side to 512


# --- predict -----------------------------------------------------------------------------------------------------


def test_predict_returns_labels_at_the_input_size(rgb):
    model = PixelModel()
    labels = predict(model, rgb)
    assert labels.shape == (37, 53) and np.issubdtype(labels.dtype, np.integer)
    tensor, _ = preprocess(rgb)
    with torch.no_grad():
        np.testing.assert_array_equal(labels, model(tensor)[0].argmax(0).numpy())
    assert len(np.unique(labels)) > 1  # a real prediction, not a constant


def test_predict_resizes_back_after_the_test_scale(rgb):
    model = PixelModel()
    model.eval_protocol = EvalProtocol(test_scale=(2048, 24), size_divisor=8)  # runs at 24×40, predicts at 37×53
    assert predict(model, rgb).shape == (37, 53)
    tta = predict(model, rgb, tta=True)
    assert tta.shape == (37, 53)
    assert (tta == predict(model, rgb)).mean() > 0.8  # a pixelwise model: TTA changes few labels


def test_predict_batches_lists_and_tensors(rgb):
    model = PixelModel()
    images = [rgb, rgb[:20, :30], Image.fromarray(rgb)]
    labels = predict(model, images, batch_size=2)
    assert [label.shape for label in labels] == [(37, 53), (20, 30), (37, 53)]
    np.testing.assert_array_equal(labels[0], labels[2])
    np.testing.assert_array_equal(labels[0][:20, :30], labels[1])
    batch = torch.from_numpy(np.stack([rgb, rgb[::-1]])).permute(0, 3, 1, 2)
    stacked = predict(model, batch)
    assert stacked.shape == (2, 37, 53)
    np.testing.assert_array_equal(stacked[0], labels[0])


def test_predict_uses_the_checkpoint_eval_mode(rgb):
    model = WindowMeanModel(num_classes=3)
    model.eval_protocol = EvalProtocol(mode="slide", crop=16, stride=8)
    predict(model, rgb)
    assert {shape[2:] for shape in model.calls} == {(16, 16)}
    model.calls.clear()
    predict(model, rgb, mode="whole")
    assert model.calls == [(1, 3, 37, 53)]


def test_predict_runs_in_eval_mode_and_restores_training(rgb):
    class TrainingProbe(PixelModel):
        def forward(self, x):
            assert not self.training and torch.is_inference_mode_enabled()
            return super().forward(x)

    model = TrainingProbe().train()
    predict(model, rgb, tta=True)
    assert model.training


def test_predict_errors_are_clear(tmp_path, rgb):
    model = PixelModel()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        predict(model, bad)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predict(model, tmp_path / "missing.jpg")
    with pytest.raises(IsADirectoryError, match="list_images"):
        predict(model, tmp_path)
    with pytest.raises(ValueError, match="2 channels"):
        predict(model, torch.rand(2, 16, 16))
    with pytest.raises(ValueError, match="crop_size"):
        predict(model, rgb, mode="slide")
    with pytest.raises(ValueError, match="no images"):
        predict(model, [])


def test_list_images_recurses_and_rejects_empty_folders(tmp_path, rgb):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "a" / "b" / "x.png")
    Image.fromarray(rgb).save(tmp_path / "a" / "y.JPG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert list_images(tmp_path / "a") == [tmp_path / "a" / "b" / "x.png", tmp_path / "a" / "y.JPG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        list_images([tmp_path / "a", tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
