"""The official Segmenter and SETR test pipelines as EvalProtocol rules: the float resize to the window
(``min_short_side``, from ``segm.model.utils.resize``) and SETR's multi-scale sizes (``setr-official``, from the
fork's ``Resize(setr_multi_scale=True)``). Expected sizes were computed with the official functions (mmcv 1.3.8's
``imrescale`` for SETR); agreement of whole predictions with the official code is in
checkpoints/test_official_segmenter.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import segzoo
from segzoo import EvalProtocol


def image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("size", "window", "expected"),
    [
        ((512, 767), 640, (640, 958)),  # h < w: the long side is int(767 / 512 * 640) = int(958.75)
        ((767, 512), 640, (958, 640)),  # h > w
        ((512, 512), 640, (640, 640)),  # square: official's h >= w branch
        ((512, 767), 512, (512, 767)),  # short side not below the window: unchanged
        ((600, 900), 512, (600, 900)),  # larger than the window: never shrunk
    ],
)
def test_short_side_size_is_the_official_resize(size, window, expected):
    assert EvalProtocol(min_short_side=window).short_side_size(*size) == expected


def test_the_float_resize_runs_on_the_normalised_tensor():
    """uint8 keep-ratio resize (427x640 -> 512x767), normalisation, then the bilinear float resize to 640x958."""
    protocol = EvalProtocol(mean=(127.5,) * 3, std=(127.5,) * 3, test_scale=(2048, 512), min_short_side=640)
    photo = image(427, 640)
    uint8 = protocol.resize(photo)
    assert uint8.dtype == np.uint8 and uint8.shape[:2] == (512, 767)
    expected = F.interpolate(protocol.normalize(uint8), (640, 958), mode="bilinear", align_corners=False)
    assert torch.equal(protocol(photo), expected)
    assert protocol.input_size(427, 640) == (640, 958)
    # each multi-scale pass too: ratio 0.5 of 2048x512 gives 256x384, brought back to the window
    assert protocol(photo, 0.5).shape[-2:] == (640, 960) and protocol.input_size(427, 640, 0.5) == (640, 960)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, (512, 767)), (0.75, (512, 767)), (1.0, (512, 767)), (1.25, (640, 959)), (1.75, (896, 1343))],
)
def test_setr_multiscale_keeps_the_short_side_at_least_the_window(ratio, expected):
    protocol = EvalProtocol(
        test_scale=(2048, 512), mode="slide", crop=(512, 512), stride=(341, 341), tta_style="setr-official"
    )
    assert protocol.resize(image(427, 640), ratio).shape[:2] == expected
    assert protocol.resized_size(640, 427, ratio) == expected[::-1]  # a tall image, the same rule


def test_the_runtimes_numpy_pipeline_makes_the_same_input():
    """The torch-free runtime's input (OpenCV's bilinear resize of the normalised image) equals PyTorch's
    ``F.interpolate(align_corners=False)`` of the official code, single scale and a multi-scale pass."""
    protocol = segzoo.get_pretrained_cfg("segmenter-l16-mask-ade-official").eval
    photo = image(60, 90)
    for ratio in (None, 0.5):
        torch_input = protocol(photo, ratio).numpy()
        numpy_input = protocol.prepare_array(photo, ratio)
        assert numpy_input.shape == torch_input.shape == (1, 3, *protocol.input_size(60, 90, ratio))
        # float32 interpolation weights computed two ways: a few ulps of the normalised values (|x| < 2.2)
        assert np.abs(numpy_input - torch_input).max() < 5e-5


def test_the_protocol_travels_in_the_export_metadata():
    protocol = segzoo.get_pretrained_cfg("segmenter-l16-mask-ade-official").eval
    assert protocol.min_short_side == 640
    assert EvalProtocol.from_dict(protocol.to_dict()) == protocol


def test_a_bad_window_is_refused():
    with pytest.raises(ValueError, match="min_short_side"):
        EvalProtocol(min_short_side=0)
