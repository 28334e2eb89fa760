"""Segmenter's decoders: the Linear decoder and the Mask Transformer.

Both read the last ViT block's patch tokens (after the encoder's final LayerNorm). Parameter names follow the
official Segmenter code (``proj_dec``, ``cls_emb``, ``blocks`` with timm's block layout, ``decoder_norm``,
``proj_patch``, ``proj_classes``, ``mask_norm``); ``proj_patch``/``proj_classes`` are bias-free ``nn.Linear`` layers,
so an official checkpoint's raw [D, D] matrices P load transposed (``x @ P == Linear(weight=Pᵀ)(x)``), exactly as
mmsegmentation stores them.

Paper: Segmenter (arXiv 2105.05633).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn


class LinearHead(nn.Module):
    """A 1×1 conv classifier on one feature map (Segmenter's Linear decoder; mmseg ``FCNHead(num_convs=0)``), or on
    several maps of the same size concatenated, after a BatchNorm (DINOv2's linear probe, mmseg ``BNHead``).

    Args:
        in_channels: Channels of the selected feature map (the sum over the maps when ``in_index`` is a sequence).
        num_classes: Number of classes.
        in_index: Which of the encoder's (or neck's) outputs to read; a sequence concatenates them.
        dropout: Dropout before the classifier.
        batch_norm: A BatchNorm on the features before the classifier (DINOv2's linear probe on frozen features).
    """

    classifier_names = ("conv_seg",)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        in_index: int | Sequence[int] = -1,
        dropout: float = 0.0,
        batch_norm: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_index = tuple(in_index) if isinstance(in_index, Sequence) else in_index
        self.bn = nn.BatchNorm2d(in_channels, device=device, dtype=dtype) if batch_norm else None
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(in_channels, num_classes, 1, device=device, dtype=dtype)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if isinstance(self.in_index, tuple):
            x = torch.cat([feats[i] for i in self.in_index], dim=1)
        else:
            x = feats[self.in_index]
        if self.bn is not None:
            x = self.bn(x)
        return self.conv_seg(self.dropout(x))


class MaskTransformer(nn.Module):
    """Mask Transformer: patch tokens and learnable class embeddings go through transformer blocks together; each
    class mask is the L2-normalised patch features · L2-normalised class feature, then a LayerNorm over classes.

    Args:
        in_channels: Encoder width.
        num_classes: Number of classes (one learnable embedding each).
        embed_dim: Decoder width (the encoder width in every published variant).
        depth: Number of transformer blocks (2 in the paper).
        num_heads: Attention heads (embed_dim // 64 in the paper).
        mlp_ratio: Block MLP expansion.
        dropout: Dropout inside the blocks, on the attention weights, the attention output and both MLP layers (the
            official code: 0.1; mmsegmentation's Segmenter configs: 0).
        drop_path_rate: Stochastic depth inside the blocks, rising linearly from 0 over them (the official code: 0;
            mmsegmentation's ``SegmenterMaskTransformerHead``: 0.1).
        drop_path_branches: ``"both"`` residual branches (timm's and the official Segmenter's block) or the
            feed-forward ``"mlp"`` branch only (mmsegmentation's ``TransformerEncoderLayer``).
        norm_eps: LayerNorm eps of the blocks (1e-5 in the official code and in mmseg's
            ``SegmenterMaskTransformerHead``; timm's ``Block`` would default to 1e-6).
        in_index: Which encoder output to read.
    """

    classifier_names = ("cls_emb", "mask_norm")

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        embed_dim: int | None = None,
        depth: int = 2,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        drop_path_rate: float = 0.0,
        drop_path_branches: str = "both",
        norm_eps: float = 1e-5,
        in_index: int = -1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if drop_path_branches not in ("mlp", "both"):
            raise ValueError(f"drop_path_branches must be 'mlp' or 'both', got {drop_path_branches!r}")
        dd = {"device": device, "dtype": dtype}
        embed_dim = embed_dim or in_channels
        num_heads = num_heads or max(embed_dim // 64, 1)
        self.num_classes = num_classes
        self.in_index = in_index
        self.scale = embed_dim**-0.5
        self.proj_dec = nn.Linear(in_channels, embed_dim, **dd)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, embed_dim, **dd))
        # Stochastic depth rising linearly over the blocks, in Python (a tensor schedule breaks on the meta device).
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias=True,
                proj_drop=dropout,
                attn_drop=dropout,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                **dd,
            )
            for i in range(depth)
        )
        if drop_path_branches == "mlp":
            for block in self.blocks:  # timm's Block: drop_path1 after attention, drop_path2 after the MLP
                block.drop_path1 = nn.Identity()
        self.decoder_norm = nn.LayerNorm(embed_dim, **dd)
        self.proj_patch = nn.Linear(embed_dim, embed_dim, bias=False, **dd)
        self.proj_classes = nn.Linear(embed_dim, embed_dim, bias=False, **dd)
        self.mask_norm = nn.LayerNorm(num_classes, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: truncated-normal linears and class embeddings, scaled random projections."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.cls_emb, std=0.02)
        for proj in (self.proj_patch, self.proj_classes):
            with torch.no_grad():
                proj.weight.copy_(self.scale * torch.randn_like(proj.weight))

    def no_weight_decay(self) -> set[str]:
        return {"cls_emb"}

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[self.in_index]
        B, _, h, w = x.shape
        x = self.proj_dec(x.flatten(2).transpose(1, 2))
        x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        patches = F.normalize(self.proj_patch(x[:, : h * w]), dim=-1)
        classes = F.normalize(self.proj_classes(x[:, h * w :]), dim=-1)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # B × N × K
        # A plain NCHW copy (small at patch resolution): the transposed view's strides send the upsampling of the
        # logits to the input size down a path that is ten times slower.
        return masks.transpose(1, 2).reshape(B, self.num_classes, h, w).contiguous()
