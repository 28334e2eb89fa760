"""SETR's decoders: Naive and PUP up-sampling heads, the MLA neck and head, as in the paper and mmsegmentation.

Module names follow mmsegmentation 1.x (``norm``, ``up_convs.{i}.{0,1}.{conv,bn}``, ``conv_seg``,
``neck.norm.{i}``, ``neck.mla.{channel_proj,feat_extract}.{i}``), whose SETR checkpoints we load. Every conv block is
Conv + plain BatchNorm + ReLU: Lightning turns BatchNorm into SyncBatchNorm when ``sync_batchnorm=True``.

Paper: SETR (arXiv 2012.15840).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segzoo.models._layers import ConvBNReLU


def _layer_norm_2d(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of an NCHW map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SetrUpHead(nn.Module):
    """Naive (``num_convs=1, kernel_size=1, up_scale=4``) and PUP (``num_convs=4, kernel_size=3, up_scale=2``) head.

    LayerNorm on the selected ViT map, then ``num_convs`` × (conv + BN + ReLU + bilinear ×``up_scale``), then a 1×1
    classifier.
    """

    classifier_names = ("conv_seg",)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        kernel_size: int = 1,
        up_scale: int = 4,
        in_index: int = -1,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_index = in_index
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps, **dd)
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvBNReLU(in_channels if i == 0 else channels, channels, kernel_size, **dd),
                nn.Upsample(scale_factor=up_scale, mode="bilinear", align_corners=False),
            )
            for i in range(num_convs)
        )
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1, **dd)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = _layer_norm_2d(self.norm, feats[self.in_index])
        for up_conv in self.up_convs:
            x = up_conv(x)
        return self.conv_seg(self.dropout(x))


class MlaModule(nn.Module):
    """1×1 projections, top-down aggregation (deepest first, each level adds the sum of the deeper ones), 3×3 convs."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.channel_proj = nn.ModuleList(ConvBNReLU(c, out_channels, 1, **dd) for c in in_channels)
        self.feat_extract = nn.ModuleList(ConvBNReLU(out_channels, out_channels, 3, **dd) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        projected = [proj(x) for proj, x in zip(self.channel_proj, feats)]
        aggregated, running = [], None
        for x in reversed(projected):
            running = x if running is None else running + x
            aggregated.append(running)
        # mmseg pairs the aggregated maps, deepest first, with feat_extract[0], [1], ...
        return [conv(x) for conv, x in zip(self.feat_extract, aggregated)]


class MlaNeck(nn.Module):
    """SETR's multi-level feature aggregation: LayerNorm on each ViT map, then :class:`MlaModule`."""

    def __init__(
        self, in_channels: Sequence[int], out_channels: int = 256, norm_eps: float = 1e-6, device=None, dtype=None
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm = nn.ModuleList(nn.LayerNorm(c, eps=norm_eps, **dd) for c in in_channels)
        self.mla = MlaModule(in_channels, out_channels, **dd)
        self.out_channels = [out_channels] * len(in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.mla([_layer_norm_2d(norm, x) for norm, x in zip(self.norm, feats)])


class SetrMlaHead(nn.Module):
    """MLA head: per neck output two 3×3 conv blocks and a bilinear ×``up_scale``; concatenated; a classifier.

    mmsegmentation's ``SETRMLAHead`` upsamples with ``align_corners=False`` and classifies with a 1×1 conv; the
    official SETR code's ``VIT_MLAHead`` (fudan-zvg/SETR) with ``align_corners=True`` and a 3×3 conv
    (``align_corners=True, kernel_size=3``).
    """

    classifier_names = ("conv_seg",)

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        mla_channels: int = 128,
        up_scale: int = 4,
        dropout: float = 0.0,
        align_corners: bool = False,
        kernel_size: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvBNReLU(c, mla_channels, 3, **dd),
                ConvBNReLU(mla_channels, mla_channels, 3, **dd),
                nn.Upsample(scale_factor=up_scale, mode="bilinear", align_corners=align_corners),
            )
            for c in in_channels
        )
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(
            mla_channels * len(in_channels), num_classes, kernel_size, padding=kernel_size // 2, **dd
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([up(f) for up, f in zip(self.up_convs, feats)], dim=1)
        return self.conv_seg(self.dropout(x))
