"""The one test pipeline per checkpoint (EvalProtocol): uint8 OpenCV resizing, the multi-scale rules of mmseg 0.x and
1.x, one object behind predict and the DataModules, and how logits of a padded input return to the input size.

Exact agreement with mmsegmentation's own pipeline and models is proven in ``reference/`` (run against mmseg 1.2.2);
these tests pin the rules so that a change shows here too."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import segzoo
from segzoo import EvalProtocol
from segzoo.data import ADE20KDataModule

from support.fake_datasets import make_ade20k
from support.inference_toys import PixelModel


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB image (so that resizing it is not trivial)."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 2)


class InputRecorder(PixelModel):
    """A pixel-wise model that keeps every input it is given."""

    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return super().forward(x)


ADE = {"test_scale": [2048, 512], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}  # arguments


def test_resize_rounds_uint8_pixels_as_opencv_does():
    image = photo(427, 640)
    protocol = EvalProtocol(test_scale=(2048, 512))
    resized = protocol.resize(image)
    assert resized.dtype == np.uint8 and resized.shape == (512, 767, 3)  # mmcv: int(640 * 512 / 427 + 0.5)
    np.testing.assert_array_equal(resized, cv2.resize(image, (767, 512), interpolation=cv2.INTER_LINEAR))
    # the bug this replaces: resizing the float image gives other pixels (rounded differently)
    as_float = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (512, 767), mode="bilinear")
    assert not torch.equal(as_float[0].permute(1, 2, 0).round(), torch.from_numpy(resized).float())


def test_size_divisor_is_a_second_uint8_resize_rounding_up():
    image = photo(427, 640)
    protocol = EvalProtocol(test_scale=(2048, 512), size_divisor=32)
    once = cv2.resize(image, (767, 512), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(protocol.resize(image), cv2.resize(once, (768, 512), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize(
    ("style", "ratio", "size"),
    [
        # mmseg 0.x MultiScaleFlipAug: scale (int(2048 r), int(512 r)), keep-ratio rule on the original 427×640
        ("mmseg-0.x", 0.5, (256, 384)),
        ("mmseg-0.x", 0.75, (384, 576)),
        ("mmseg-0.x", 1.75, (896, 1343)),
        # mmseg 1.x Resize(scale_factor=r, keep_ratio=True): scale (int(640 r + .5), int(427 r + .5)), same rule
        ("mmseg-1.x", 0.5, (214, 320)),
        ("mmseg-1.x", 0.75, (320, 480)),
        ("mmseg-1.x", 1.0, (427, 640)),
        ("mmseg-1.x", 1.75, (747, 1120)),
    ],
)
def test_multiscale_sizes_follow_each_mmseg_version(style, ratio, size):
    protocol = EvalProtocol(test_scale=(2048, 512), tta_style=style)
    assert protocol.resize(photo(427, 640), ratio).shape[:2] == size


def test_every_multiscale_input_is_resized_once_from_the_original():
    image = photo(300, 451)
    protocol = EvalProtocol(test_scale=(2048, 512))
    for ratio, tensor in zip(protocol.tta_scales, protocol.tta_inputs(image)):
        size = protocol.resized_size(300, 451, ratio)
        direct = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        torch.testing.assert_close(tensor, protocol.normalize(direct), rtol=0, atol=0)


def test_predict_feeds_the_model_exactly_the_protocol_input():
    model = InputRecorder()
    model.eval_protocol = EvalProtocol(**ADE, size_divisor=32)
    image = photo(427, 640)
    labels = segzoo.predict(model, image)
    assert labels.shape == (427, 640) and labels.dtype == np.int64
    (seen,) = model.inputs
    torch.testing.assert_close(seen, model.eval_protocol(image), rtol=0, atol=0)


def test_predict_tta_runs_every_scale_from_the_original_and_flipped():
    model = InputRecorder()
    model.eval_protocol = EvalProtocol(**ADE, tta_style="mmseg-1.x")
    image = photo(120, 90)
    segzoo.predict(model, image, tta=True)
    protocol = model.eval_protocol
    expected = protocol.tta_inputs(image)
    assert len(model.inputs) == 2 * len(expected)  # each scale, then its mirror image
    for i, tensor in enumerate(expected):
        torch.testing.assert_close(model.inputs[2 * i], tensor, rtol=0, atol=0)
        torch.testing.assert_close(model.inputs[2 * i + 1], tensor.flip(-1), rtol=0, atol=0)


def test_validation_scores_the_original_through_the_datamodules_pipeline(tmp_path):
    """A validation run feeds the model exactly what the DataModule's test pipeline makes of each image as read (as
    predict does), and compares predictions at the image's own size with the masks as stored."""
    from segzoo.training import SegmentationTask

    from support.lit_helpers import quiet_trainer

    make_ade20k(tmp_path)
    dm = ADE20KDataModule(tmp_path, eval_scale=(2048, 96), size_divisor=32, batch_size=1, num_workers=0)
    model = InputRecorder(num_classes=150)
    module = SegmentationTask(model, num_classes=150, num_log_images=0)
    quiet_trainer().validate(module, dm, verbose=False)
    dm.setup("validate")
    images = [dm.datasets["val"].load_sample(i) for i in range(len(dm.datasets["val"]))]
    assert dm.eval_protocol == EvalProtocol(dm.mean, dm.std, test_scale=(2048, 96), size_divisor=32)
    assert len(model.inputs) == len(images) == 2
    for seen, (image, _, _) in zip(model.inputs, images):
        assert seen.shape[-2:] == (96, 160) and image.shape[:2] == (40, 60)
        torch.testing.assert_close(seen, dm.eval_protocol(image), rtol=0, atol=0)
    # the confusion matrix is that of predict's labels (at 40×60) against the masks as stored
    model.eval_protocol = EvalProtocol(dm.mean, dm.std, test_scale=dm.eval_scale, size_divisor=32)
    expected = torch.zeros(150, 150, dtype=torch.long)
    for image, mask, _ in images:
        labels = torch.from_numpy(segzoo.predict(model, image))
        valid = torch.from_numpy(mask != 255)
        target = torch.from_numpy(mask.astype(np.int64))[valid]
        expected.index_put_((target, labels[valid]), torch.tensor(1), accumulate=True)
    assert torch.equal(module.confusion_matrices["val"], expected) and expected.sum() == (mask != 255).sum() * 2


@pytest.mark.parametrize("name", ["segmenter-test-mask", "setr-test-naive"])
def test_padded_logits_are_resized_to_the_input_as_mmseg_does(name):
    model = segzoo.create_model(name, num_classes=5).eval()
    assert model.unpad == "resize"
    x = torch.randn(1, 3, 45, 61)  # not whole patches: padded to 48×64 (patch 8) or 48×64 (patch 16)
    with torch.no_grad():
        padded = F.pad(x, (0, 64 - 61, 0, 48 - 45))
        head_logits = model.decode_head(model.extract_features(padded))
        expected = F.interpolate(head_logits, (45, 61), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)
        model.unpad = "crop"  # the official Segmenter code: upsample to the padded size, then crop
        cropped = F.interpolate(head_logits, (48, 64), mode="bilinear", align_corners=False)[..., :45, :61]
        torch.testing.assert_close(model(x), cropped)
        assert (cropped - expected).abs().max() > 1e-3  # the two rules give different logits


def test_official_segmenter_files_load_with_their_own_numerics(tmp_path):
    from support.checkpoint_formats import randomized, to_segmenter_official

    source = randomized("segmenter-test-mask")
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": to_segmenter_official(source.state_dict())}, path)
    model = segzoo.load("segmenter-test-mask", checkpoint=path)
    assert model.unpad == "crop"
    assert model.backbone.pos_embed_interp == "bilinear" and model.backbone.norm.eps == 1e-5


def test_mmseg_vit_files_without_patch_bias_load_without_one(tmp_path):
    from support.checkpoint_formats import randomized, to_mmseg

    state = to_mmseg(randomized("segmenter-test-linear").state_dict())
    del state["backbone.patch_embed.projection.bias"]  # mmseg >= 1.1 builds its ViT with patch_bias=False
    path = tmp_path / "mmseg.pth"
    torch.save({"state_dict": state, "meta": {"mmseg_version": "1.2.2"}}, path)
    model = segzoo.load("segmenter-test-linear", checkpoint=path)
    assert model.backbone.patch_embed.proj.bias is None  # as mmseg's model: no parameter mmseg's lacks
    state["backbone.something_else.weight"] = torch.zeros(1)  # every other unexpected key stays an error
    torch.save({"state_dict": state}, path)
    with pytest.raises(segzoo.ConversionError, match="something_else"):
        segzoo.load("segmenter-test-linear", checkpoint=path)
