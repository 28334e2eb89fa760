"""Inputs with another number of channels than RGB: pretrained RGB weights of the first convolution are adapted as
timm adapts them (one channel: R + G + B; more: R, G, B, R, ... × 3 / in_chans)."""

from __future__ import annotations

import pytest
import torch

import segzoo


@pytest.mark.parametrize("arch", ["segformer-test", "segmenter-test-linear", "setr-test-pup"])
def test_rgb_weights_load_into_a_model_with_more_or_fewer_channels(arch, tmp_path, caplog):
    torch.manual_seed(0)
    rgb = segzoo.create_model(arch, num_classes=3).eval()
    rgb.save_pretrained(tmp_path)
    with caplog.at_level("INFO", logger="segzoo"):
        four = segzoo.load(str(tmp_path), in_chans=4)
    assert "3-channel weights adapted to 4 input channels" in caplog.text
    gray = segzoo.load(str(tmp_path), in_chans=1)
    assert four.in_chans == 4 and gray.in_chans == 1
    x = torch.rand(1, 3, 64, 64)
    g = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        # a fourth channel of zeros, and RGB scaled by 4/3, gives the RGB model's features
        torch.testing.assert_close(
            four.backbone(torch.cat([x * 4 / 3, torch.zeros_like(g)], 1))[-1], rgb.backbone(x)[-1], rtol=1e-4, atol=1e-5
        )
        # one channel: the RGB model's features of that channel repeated as R = G = B
        torch.testing.assert_close(gray.backbone(g)[-1], rgb.backbone(g.expand(1, 3, 64, 64))[-1], rtol=1e-4, atol=1e-5)
    assert four(torch.rand(2, 4, 40, 56)).shape == (2, 3, 40, 56)


def test_a_wrong_channel_count_says_what_the_model_takes():
    model = segzoo.create_model("segformer-test", num_classes=3, in_chans=4)
    with pytest.raises(ValueError, match="expected 4 input channels"):
        model(torch.rand(1, 3, 32, 32))
