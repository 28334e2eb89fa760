"""Plain ViT encoder for SETR and Segmenter, and the SETR-Hybrid ResNet-50 + ViT encoder.

Built on timm's ``VisionTransformer`` and keeping its parameter names (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``), so timm / AugReg ImageNet
weights load without renaming. What segmentation adds:
- position embeddings resampled to any input grid, with the interpolation the reference code used
  (mmsegmentation: bicubic; official Segmenter: bilinear), never antialiased;
- the outputs of the blocks a decoder asks for, as NCHW maps;
- no class token for SETR-MLA: mmsegmentation's ``with_cls_token=False`` adds the class token's position embedding
  and drops the token before the first block, which is the same as having none (converters drop both);
- DeiT's distillation token (``dist_token=True``): a second prefix token after the class token, with its own position
  embedding, which is what timm's single register token is, so it is stored as ``reg_token`` (DeiT-distilled
  Segmenter, arXiv 2012.12877).
- training noise placed as the publisher placed it: mmsegmentation's ``TransformerEncoderLayer`` drops paths on the
  feed-forward branch only (``drop_path_branches="mlp"``, the default), timm and the official Segmenter code on both;
- no patch-projection bias where the weights have none (mmseg >= 1.1 writes its ViTs with ``patch_bias=False``).

Papers: SETR (arXiv 2012.15840), Segmenter (arXiv 2105.05633); ViT (arXiv 2010.11929).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import timm
import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint


class ViTEncoder(VisionTransformer):
    """ViT returning the outputs of blocks ``out_indices`` as B×C×(H/p)×(W/p) maps.

    Args:
        out_indices: Block indices (0-based) whose outputs are returned, in order.
        img_size: Crop size the position embeddings are stored for (the training crop).
        class_token: Prepend a class token (never returned).
        final_norm: Apply the final LayerNorm to the last block's output (Segmenter); SETR has none.
        pos_embed_interp: Interpolation used to resample position embeddings to another grid.
        norm_eps: LayerNorm eps (timm and mmsegmentation: 1e-6; the official Segmenter code: 1e-5).
        dist_token: Add DeiT's distillation token (timm's ``reg_token``) after the class token (never returned).
        drop_rate: Dropout after the position embeddings.
        drop_path_branches: Where stochastic depth (``drop_path_rate``, rising linearly over the blocks) acts:
            ``"mlp"``, the feed-forward branch only (mmsegmentation's ViT), or ``"both"`` (timm, the official
            Segmenter code). No drop-path layer is built where the rate is 0.
        patch_bias: Whether the patch projection has a bias (mmseg >= 1.1's files have none).
        **kwargs: Passed to timm's ``VisionTransformer`` (``patch_size``, ``embed_dim``, ``depth``, ``num_heads``,
            ``drop_path_rate``, ``device``, ...).
    """

    def __init__(
        self,
        out_indices: Sequence[int],
        img_size: int = 512,
        class_token: bool = True,
        final_norm: bool = False,
        pos_embed_interp: str = "bicubic",
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        dist_token: bool = False,
        drop_path_branches: str = "mlp",
        patch_bias: bool = True,
        **kwargs,
    ):
        if drop_path_branches not in DROP_PATH_BRANCHES:
            raise ValueError(f"drop_path_branches must be one of {DROP_PATH_BRANCHES}, got {drop_path_branches!r}")
        if not patch_bias:
            kwargs["embed_layer"] = partial(_without_bias, kwargs.get("embed_layer", PatchEmbed))
        super().__init__(
            norm_layer=partial(nn.LayerNorm, eps=norm_eps),
            img_size=img_size,
            num_classes=0,
            global_pool="",
            class_token=class_token,
            reg_tokens=1 if dist_token else 0,
            final_norm=final_norm,
            dynamic_img_size=True,
            pos_drop_rate=drop_rate,
            **kwargs,
        )
        depth = len(self.blocks)
        if not out_indices or any(i < 0 or i >= depth for i in out_indices):
            raise ValueError(f"out_indices {tuple(out_indices)} must be block indices in [0, {depth - 1}]")
        self.out_indices = tuple(out_indices)
        self.out_channels = [self.embed_dim] * len(self.out_indices)
        self.pos_embed_interp = pos_embed_interp
        self.drop_path_branches = drop_path_branches
        if drop_path_branches == "mlp":
            for block in self.blocks:  # timm's Block: drop_path1 after attention, drop_path2 after the MLP
                block.drop_path1 = nn.Identity()

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend the class and distillation tokens (if any) and add position embeddings resampled to the grid of
        ``x`` (B×h×w×C)."""
        B, H, W, C = x.shape
        pos_embed = resample_abs_pos_embed(
            self.pos_embed,
            new_size=(H, W),
            old_size=self.patch_embed.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            interpolation=self.pos_embed_interp,
            antialias=False,
        )
        x = x.reshape(B, H * W, C)
        prefix = [token.expand(B, -1, -1) for token in (self.cls_token, self.reg_token) if token is not None]
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        return self.pos_drop(x + pos_embed)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)  # B×h×w×C
        B, h, w, C = x.shape
        x = self._pos_embed(x)
        prefix = self.num_prefix_tokens
        x = self.norm_pre(x)
        outs, last = [], len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = checkpoint(block, x, use_reentrant=False) if self.grad_checkpointing and self.training else block(x)
            if i == last:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(x[:, prefix:].transpose(1, 2).reshape(B, C, h, w))
        return outs


DROP_PATH_BRANCHES = ("mlp", "both")


def _without_bias(embed_layer, **kwargs) -> nn.Module:
    """``embed_layer(**kwargs)`` with a bias-free projection (timm passes ``bias`` itself)."""
    return embed_layer(**{**kwargs, "bias": False})


class ResNetPatchEmbed(nn.Module):
    """SETR-Hybrid's patch embedding: timm ResNet-50 at output stride 16, then a 1×1 projection to the ViT width.

    Called by timm's ``VisionTransformer`` as its ``embed_layer``; returns B×h×w×C like timm's ``PatchEmbed`` with
    ``dynamic_img_size``.
    """

    def __init__(
        self, img_size: int, embed_dim: int, in_chans: int = 3, bias: bool = True, device=None, dtype=None, **_
    ):
        super().__init__()
        self.backbone = timm.create_model(
            "resnet50", features_only=True, out_indices=(4,), output_stride=16, in_chans=in_chans, pretrained=False
        ).to(device=device, dtype=dtype)
        self.proj = nn.Conv2d(
            self.backbone.feature_info.channels()[-1], embed_dim, 1, bias=bias, device=device, dtype=dtype
        )
        self.patch_size = (16, 16)
        self.grid_size = (img_size // 16, img_size // 16)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self, as_scalar: bool = True) -> int:
        return 16

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return -(-img_size[0] // 16), -(-img_size[1] // 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x)[-1]).permute(0, 2, 3, 1)


def hybrid_vit_encoder(**kwargs) -> ViTEncoder:
    """SETR-Hybrid encoder: ``ViTEncoder`` whose patch embedding is a ResNet-50 (patch size 16 in effect)."""
    return ViTEncoder(embed_layer=ResNetPatchEmbed, patch_size=16, **kwargs)
