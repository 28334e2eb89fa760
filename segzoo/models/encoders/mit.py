"""Mix Transformer (MiT-B0…B5), SegFormer's hierarchical encoder.

Four stages, each an overlapping patch embedding (strided conv + LayerNorm), blocks of efficient self-attention
(keys and values spatially reduced by a strided conv, ratio ``sr``) and a Mix-FFN (fc1 → 3×3 depth-wise conv → GELU →
fc2), and a stage LayerNorm. Parameter names follow the official NVlabs code (``patch_embed{i}``, ``block{i}``,
``norm{i}``, ``attn.{q,kv,sr,norm,proj}``, ``mlp.{fc1,dwconv.dwconv,fc2}``), which SMP also uses, so those checkpoints
load unchanged and Hugging Face's are a rename.

Paper: SegFormer (arXiv 2105.15203). The MLP ratio is 4 in every stage as in the released code (the paper's appendix
table says 8 for early stages; the checkpoints follow the code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from segzoo._errors import InputSizeError


def nlc_to_nchw(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """B×N×C tokens as a B×C×H×W map without copying: the result is the same memory in channels-last layout."""
    return x.view(x.shape[0], H, W, x.shape[2]).permute(0, 3, 1, 2)


def nchw_to_nlc(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W map as B×N×C tokens; free for a channels-last map (what convs return for channels-last input)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (kernel > stride), then LayerNorm over channels."""

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        stride: int,
        norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2, **dd)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps, **dd)  # official code: 1e-5; mmseg: 1e-6

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        H, W = x.shape[2:]
        return self.norm(nchw_to_nlc(x)), H, W


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from a sequence shrunk ``sr_ratio``² times by a strided conv."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)  # rows [0, dim) are K, [dim, 2·dim) are V
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio, **dd)
            self.norm = nn.LayerNorm(dim, eps=sr_norm_eps, **dd)  # official code: 1e-5; mmseg: 1e-6

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        head_dim = C // self.num_heads
        q = self.q(x).reshape(B, N, self.num_heads, head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, H, W))))
        k, v = self.kv(x).reshape(B, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class DepthwiseConv(nn.Module):
    """3×3 depth-wise conv applied to a token sequence laid out on its H×W grid (the "Mix" in Mix-FFN)."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return nchw_to_nlc(self.dwconv(nlc_to_nchw(x, H, W)))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(dim, hidden_dim, **dd)
        self.dwconv = DepthwiseConv(hidden_dim, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, **dd)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            return self.forward_as_convs(x, H, W)
        x = self.drop(self.act(self.dwconv(self.fc1(x), H, W)))
        return self.drop(self.fc2(x))

    def forward_as_convs(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The same computation on the B×C×H×W map, with fc1 and fc2 as 1×1 convs (mmseg's MixFFN layout). Exported
        graphs use it: onnxruntime then runs the whole FFN in its blocked conv layout instead of converting the
        hidden map in and out of it around the depth-wise conv (stage 1 of B2 at 512×768: 23.5 → 15.2 ms)."""
        x = F.conv2d(x.transpose(1, 2).reshape(x.shape[0], -1, H, W), self.fc1.weight[:, :, None, None], self.fc1.bias)
        x = self.drop(self.act(self.dwconv.dwconv(x)))
        x = F.conv2d(x, self.fc2.weight[:, :, None, None], self.fc2.bias)
        return self.drop(x.flatten(2).transpose(1, 2))


class MixBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        norm_eps: float,
        sr_norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio, qkv_bias, attn_drop, drop, sr_norm_eps, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio), drop, **dd)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class MixTransformer(nn.Module):
    """MiT encoder returning the four stage outputs (strides 4, 8, 16, 32) as NCHW maps.

    Args:
        embed_dims: Channels of the four stages.
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        sr_ratios: Spatial-reduction ratio of keys/values per stage.
        mlp_ratios: Mix-FFN expansion per stage.
        norm_eps: LayerNorm eps of blocks and stage norms (official code: 1e-6; Hugging Face builds 1e-5).
        patch_norm_eps: LayerNorm eps after each overlapping patch embedding (official code: 1e-5; mmsegmentation
            builds every MiT LayerNorm with 1e-6).
        sr_norm_eps: LayerNorm eps after the keys/values' spatial-reduction conv (official code: 1e-5; mmseg: 1e-6).
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        in_chans: int = 3,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-6,
        patch_norm_eps: float = 1e-5,
        sr_norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.out_channels = list(embed_dims)
        self.depths = list(depths)
        # Stochastic depth rising linearly over all blocks, in Python: a tensor schedule breaks on the meta device.
        dpr = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]
        prev_dim, first = in_chans, 0
        for i, (dim, depth) in enumerate(zip(embed_dims, depths), start=1):
            patch_embed = OverlapPatchEmbed(prev_dim, dim, patch_sizes[i - 1], strides[i - 1], patch_norm_eps, **dd)
            self.add_module(f"patch_embed{i}", patch_embed)
            blocks = [
                MixBlock(
                    dim,
                    num_heads[i - 1],
                    mlp_ratios[i - 1],
                    sr_ratios[i - 1],
                    qkv_bias,
                    drop_rate,
                    attn_drop_rate,
                    dpr[first + j],
                    norm_eps,
                    sr_norm_eps,
                    **dd,
                )
                for j in range(depth)
            ]
            self.add_module(f"block{i}", nn.ModuleList(blocks))
            self.add_module(f"norm{i}", nn.LayerNorm(dim, eps=norm_eps, **dd))
            prev_dim, first = dim, first + depth
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        smallest = 4 * self.block1[0].attn.sr_ratio  # stage-1 keys are reduced by a sr×sr conv on the 1/4 map
        if not torch.compiler.is_compiling() and min(x.shape[2:]) < smallest:  # no size guard in exported graphs
            raise InputSizeError(
                f"MiT needs inputs of at least {smallest}×{smallest} px, got {tuple(x.shape[2:])}: pad or enlarge "
                "the image"
            )
        # Channels-last throughout: token sequences and conv maps are then views of each other, with no copies.
        x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i in range(1, len(self.out_channels) + 1):
            x, H, W = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x, H, W)
            x = nlc_to_nchw(getattr(self, f"norm{i}")(x), H, W)
            outs.append(x)
        return outs

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None) -> list[torch.Tensor]:
        """The stage outputs (NCHW, strides 4, 8, 16, 32) as timm's ``forward_intermediates`` names them: stages
        ``indices``, the last ``n`` stages for an int, all four for None."""
        outs = self.forward(x)
        if indices is None:
            return outs
        if isinstance(indices, int):
            return outs[len(outs) - indices :]
        return [outs[i] for i in indices]


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated normal linears, fan-out normal convs, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
