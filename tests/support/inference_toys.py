"""Toy segmentation models for the inference tests: each returns B×K×H×W logits at the input size."""

from __future__ import annotations

import torch
from torch import nn


class PixelModel(nn.Module):
    """A 1×1 convolution: each pixel's logits depend only on that pixel, so every window agrees with the whole image
    and the model commutes with flips."""

    def __init__(self, num_classes: int = 4, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator))
        self.pretrained_cfg: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class WindowMeanModel(nn.Module):
    """Logits equal to the mean of the first input channel over the whole input, at every pixel: the output of a
    sliding window tells which window it came from. Records the batch size of each call."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        mean = x[:, :1].mean(dim=(2, 3), keepdim=True)
        return mean.expand(x.shape[0], self.num_classes, x.shape[2], x.shape[3]).clone()


class RampModel(nn.Module):
    """Two-class logits (ramp, 0) with the ramp growing from 0 to 4, left to right, whatever the input: not
    flip-equivariant, and averaging its probabilities over a flip differs from averaging its logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0.0, 4.0, x.shape[3]).expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return torch.cat([ramp, torch.zeros_like(ramp)], dim=1)
