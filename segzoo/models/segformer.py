"""SegFormer's All-MLP decode head, in the layout of the official code and Hugging Face transformers.

Each stage map c_k is projected to C channels by a linear layer (``linear_c{k}.proj``), upsampled to the 1/4 map,
the four are concatenated in the order c4, c3, c2, c1 and fused by a 1×1 conv + BN + ReLU (``linear_fuse``), then
classified (``linear_pred``). C = 256 for B0/B1 and 768 for B2–B5.

The forward pass computes exactly that, but in a cheaper order: the per-stage linear layer and the fuse conv's slice
for that stage are both per-pixel linear maps, and bilinear upsampling is linear per channel and keeps constants
(its weights sum to one), so they commute. We merge them into one C_k→C map applied at the stage's own resolution,
upsample the C-channel result and sum, instead of fusing a 4C-channel map at 1/4 resolution. In eval mode the
BatchNorm after the fuse is an affine map too and is folded into the same projections. Under bf16 on the CPU the
upsample-and-sum is one matrix product (``segzoo.models.resize.resize_and_sum``), which the matrix units run.

Paper: SegFormer (arXiv 2105.15203).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU
from .resize import resize, resize_and_sum, use_matrix_resize


class MLP(nn.Module):
    """Linear projection of an NCHW map's channels (kept as a module for the official key names)."""

    def __init__(self, in_dim: int, out_dim: int, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim, device=device, dtype=dtype)


class SegformerHead(nn.Module):
    """All-MLP decoder.

    Args:
        in_channels: Channels of the four encoder stages (c1…c4).
        num_classes: Number of classes.
        channels: Unified MLP width C.
        dropout: Dropout before the classifier.
    """

    classifier_names = ("linear_pred",)

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, channels: int = 256, dropout: float = 0.1,
        device=None, dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.channels = channels
        for k, c in enumerate(in_channels, start=1):
            self.add_module(f"linear_c{k}", MLP(c, channels, **dd))
        self.num_inputs = len(in_channels)
        self.linear_fuse = ConvBNReLU(channels * self.num_inputs, channels, 1, **dd)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(channels, num_classes, 1, **dd)

    def fused_projection(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of ``linear_c{k}`` followed by the fuse conv's slice for stage k (concat order c4…c1)."""
        C = self.channels
        block = self.num_inputs - k  # c4 is block 0 of the concatenation
        fuse = self.linear_fuse.conv.weight[:, block * C : (block + 1) * C, 0, 0]
        proj = getattr(self, f"linear_c{k}").proj
        return fuse @ proj.weight, fuse @ proj.bias

    def batch_norm_affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """In eval mode the fuse BatchNorm is the per-channel affine map x·scale + shift, which folds into the
        projections; in training it normalises with batch statistics and stays a layer (``None``)."""
        bn = self.linear_fuse.bn
        if self.training or not bn.track_running_stats:
            return None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return scale, bn.bias - bn.running_mean * scale

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        affine = self.batch_norm_affine()
        maps = []
        for k, feat in enumerate(feats, start=1):
            weight, bias = self.fused_projection(k)
            if affine is not None:
                scale, shift = affine
                weight, bias = weight * scale[:, None], bias * scale + (shift if k == 1 else 0)
            maps.append(F.conv2d(feat, weight[:, :, None, None], bias))
        x = self.upsample_and_sum(maps, size)
        x = self.linear_fuse.act(x if affine is not None else self.linear_fuse.bn(x))
        return self.linear_pred(self.dropout(x))

    @staticmethod
    def upsample_and_sum(maps: list[torch.Tensor], size) -> torch.Tensor:
        """Sum of the stage maps at the 1/4 resolution (the first map's)."""
        first, rest = maps[0], maps[1:]
        if use_matrix_resize(first):  # a map already at full size gets an identity matrix
            return resize_and_sum(first, rest)  # bf16 on CPU: one matrix product does all the upsampling and adding
        x = first
        for m in rest:
            x = x.add_(resize(m, size) if m.shape[2:] != size else m)  # in place: no fresh B×C×H/4×W/4 buffer per stage
        return x
