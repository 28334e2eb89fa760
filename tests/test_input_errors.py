"""Bad or unusual inputs to the model API and predict end in an error (or warning) that says what to change, not
deep inside torch — or, where the input is legitimate, just work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segzoo
from segzoo.inference._tensor import slide_inference


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_num_classes_is_validated_in_one_place(bad, tmp_path):
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer \(e\.g\. 19\), got"):
        segzoo.create_model("segformer-test", num_classes=bad)
    if bad is not None:  # load's num_classes=None means "the checkpoint's"
        segzoo.create_model("segformer-test", num_classes=3).save_pretrained(tmp_path)
        with pytest.raises(ValueError, match=r"num_classes must be a positive integer"):
            segzoo.load(str(tmp_path), num_classes=bad)


def test_torch_jit_script_says_which_exports_work():
    with pytest.raises(RuntimeError, match="torch.jit.script does not support segzoo models: use torch.export"):
        torch.jit.script(segzoo.create_model("segformer-test", num_classes=3))


@pytest.mark.parametrize("name", ["segformer-b0", "segformer-b0-mmseg", "segmenter-t16-mask", "setr-mla-l16"])
def test_models_build_on_the_meta_device(name):
    with torch.device("meta"):
        model = segzoo.create_model(name)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_input_of_another_dtype_says_how_to_cast():
    model = segzoo.create_model("segformer-test", num_classes=3).eval()
    with pytest.raises(ValueError, match=r"input is torch.float16 but the model's weights are torch.float32.*x\.to"):
        model(torch.randn(1, 3, 32, 32, dtype=torch.float16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision stays allowed
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_predict_casts_images_to_the_model_dtype():
    model = segzoo.create_model("segformer-test", num_classes=3).eval().double()
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = model.predict(image)
    reference = segzoo.create_model("segformer-test", num_classes=3).eval()
    reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    assert labels.shape == (40, 50) and (labels == reference.predict(image)).mean() > 0.99


@pytest.mark.parametrize("shape", [(0, 3, 32, 32), (1, 3, 0, 32), (1, 3, 32, 0)])
def test_empty_batches_and_sizes_are_refused(shape):
    model = segzoo.create_model("segformer-test", num_classes=3)
    with pytest.raises(ValueError, match="at least one image of at least 1×1 pixels"):
        model(torch.zeros(shape))


def test_slide_stride_larger_than_the_window_is_refused():
    model = segzoo.create_model("segformer-test", num_classes=3).eval()
    with pytest.raises(ValueError, match="leaves pixels no window covers"):
        slide_inference(model, torch.randn(1, 3, 64, 64), crop_size=16, stride=24)
    with pytest.raises(ValueError, match="leaves pixels no window covers"):
        model.predict(np.zeros((64, 64, 3), np.uint8), mode="slide", crop_size=16, stride=(8, 24))


def test_float_images_outside_unit_range_or_not_finite_warn():
    model = segzoo.create_model("segformer-test", num_classes=3).eval()
    image = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"read as 0–1.*divide by 255"):
        model.predict(image * 255)
    image[0, 0, 0] = np.nan
    with pytest.warns(UserWarning, match="1 NaN or infinite values"):
        model.predict(image)
