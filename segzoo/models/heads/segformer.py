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

mmsegmentation's different SegFormer head (per-stage conv + BN + ReLU, fusion in the order c1…c4, C = 256 for every
size) is :class:`MmsegSegformerHead`, computed with the same trick.

Paper: SegFormer (arXiv 2105.15203).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.models._layers import ConvBNReLU
from segzoo.models._resize import resize, resize_and_sum, use_matrix_resize


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
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        dropout: float = 0.1,
        device=None,
        dtype=None,
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


class MmsegSegformerHead(nn.Module):
    """mmsegmentation's ``SegformerHead``, which most SegFormer checkpoints trained outside NVIDIA use.

    It is not the official head: each stage map c_k goes through a 1×1 conv (no bias) + BN + ReLU to C channels
    (``convs.{k-1}``), the four are upsampled to the 1/4 map and concatenated in the order c1, c2, c3, c4, fused by a
    1×1 conv + BN + ReLU (``fusion_conv``), then dropout and the classifier (``conv_seg``). mmseg uses C = 256 for
    every size. Module names are mmseg's, so its ``decode_head.*`` keys load unchanged.

    The forward pass uses the same commuting trick as :class:`SegformerHead`: the fusion conv's slice for stage k is a
    per-pixel linear map applied after the stage's ReLU, so it runs at the stage's own resolution before the
    upsampling, and the four C-channel results are summed instead of fusing a 4C-channel map at 1/4 resolution. The
    per-stage conv + BN + ReLU stays at stage resolution (the ReLU is not linear). In eval mode both BatchNorms are
    affine maps: the stage BN folds into its conv and the fusion BN into the fusion slices.

    Args:
        in_channels: Channels of the four encoder stages (c1…c4).
        num_classes: Number of classes.
        channels: Width C of every branch and of the fused map.
        dropout: Dropout before the classifier.
    """

    classifier_names = ("conv_seg",)

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        dropout: float = 0.1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.channels = channels
        self.convs = nn.ModuleList(ConvBNReLU(c, channels, 1, **dd) for c in in_channels)
        self.fusion_conv = ConvBNReLU(channels * len(in_channels), channels, 1, **dd)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1, **dd)

    def stage_branch(self, k: int, feat: torch.Tensor) -> torch.Tensor:
        """``convs[k]`` (conv + BN + ReLU) on stage k's map; in eval mode the BN is folded into the conv."""
        branch = self.convs[k]
        affine = _eval_batch_norm_affine(branch.bn, self.training)
        if affine is None:
            return branch(feat)
        scale, shift = affine
        return F.relu(F.conv2d(feat, branch.conv.weight * scale[:, None, None, None], shift), inplace=True)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        C = self.channels
        affine = _eval_batch_norm_affine(self.fusion_conv.bn, self.training)
        maps = []
        for k, feat in enumerate(feats):
            weight, bias = self.fusion_conv.conv.weight[:, k * C : (k + 1) * C], None  # concat order c1…c4
            if affine is not None:
                scale, shift = affine
                weight, bias = weight * scale[:, None, None, None], (shift if k == 0 else None)
            maps.append(F.conv2d(self.stage_branch(k, feat), weight, bias))
        x = SegformerHead.upsample_and_sum(maps, size)
        x = self.fusion_conv.act(x if affine is not None else self.fusion_conv.bn(x))
        return self.conv_seg(self.dropout(x))


def _eval_batch_norm_affine(bn: nn.BatchNorm2d, training: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """An eval-mode BatchNorm as x·scale + shift; ``None`` while it normalises with batch statistics."""
    if training or not bn.track_running_stats:
        return None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale
