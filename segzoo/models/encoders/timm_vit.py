"""Any timm ViT as a segzoo encoder: DINOv2 (with or without registers), EVA-02 (RoPE), DeiT (distillation token),
AugReg, ... under the Segmenter and SETR heads.

Everything that differs between those models stays timm's: the model is ``timm.create_model(name)`` itself, its
position embeddings are resampled to each input's grid by timm (``dynamic_img_size=True``), its prefix tokens
(class, registers, distillation) are dropped and its patch tokens reshaped to maps by timm's
``forward_intermediates``. This module only chooses which blocks to read.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Sequence

import timm
import torch
from torch import nn

from segzoo._errors import UnknownModelError

# timm models known to work under every ViT head (tested in tests/models/test_timm_encoders.py with tiny random
# versions of the same classes); any timm model with patch tokens and ``forward_intermediates`` is accepted.
KNOWN_TIMM_ENCODERS = (
    "vit_small_patch14_dinov2.lvd142m",
    "vit_base_patch14_dinov2.lvd142m",
    "vit_large_patch14_dinov2.lvd142m",
    "vit_giant_patch14_dinov2.lvd142m",
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_base_patch14_reg4_dinov2.lvd142m",
    "vit_large_patch14_reg4_dinov2.lvd142m",
    "vit_giant_patch14_reg4_dinov2.lvd142m",
    "eva02_small_patch14_224.mim_in22k",
    "eva02_base_patch14_224.mim_in22k",
    "eva02_large_patch14_224.mim_in22k",
    "deit_small_patch16_224.fb_in1k",
    "deit_base_patch16_224.fb_in1k",
    "deit_base_distilled_patch16_224.fb_in1k",
    "deit3_base_patch16_224.fb_in22k_ft_in1k",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "vit_large_patch16_224.augreg_in21k_ft_in1k",
)


def _patch_size(vit: nn.Module) -> int:
    size = vit.patch_embed.patch_size
    size = size if isinstance(size, int) else size[0]
    if not isinstance(vit.patch_embed.patch_size, int) and len(set(vit.patch_embed.patch_size)) != 1:
        raise ValueError(f"non-square patches {tuple(vit.patch_embed.patch_size)} are not supported")
    return int(size)


def check_timm_name(model_name: str) -> None:
    """Raises :class:`UnknownModelError` with timm's closest model names when timm has no ``model_name`` (an
    ``hf-hub:`` or other prefixed name is left to timm)."""
    if ":" in model_name:
        return
    arch, _, tag = model_name.partition(".")
    if timm.is_model(arch):
        tags = timm.list_pretrained(f"{arch}.*")
        if not tag or model_name in tags:
            return
        raise UnknownModelError(f"timm's {arch} has no weights tagged {tag!r}; its tags: {', '.join(tags) or 'none'}")
    close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
    raise UnknownModelError(
        f"timm has no model {model_name!r}"
        + (f"; closest: {', '.join(close)}" if close else "")
        + f". Tested encoders: segzoo.models.KNOWN_TIMM_ENCODERS, e.g. {KNOWN_TIMM_ENCODERS[0]}"
    )


def check_timm_vit(model_name: str, vit: nn.Module) -> None:
    """Raises ``ValueError`` (naming what is missing and the models known to work) when ``vit`` cannot serve a ViT
    head: it needs patch tokens (``patch_embed``, ``blocks``, ``num_prefix_tokens``) and ``forward_intermediates``."""
    needed = ("patch_embed", "blocks", "num_prefix_tokens", "forward_intermediates")
    missing = [attribute for attribute in needed if not hasattr(vit, attribute)]
    if missing:
        kind = "a CNN or hierarchical model" if "patch_embed" in missing or "blocks" in missing else "a timm model"
        raise ValueError(
            f"timm model {model_name!r} ({type(vit).__name__}) cannot serve as a ViT encoder: it is {kind} without "
            f"{', '.join(missing)}. The Segmenter and SETR heads read the patch tokens of a plain ViT; known to work: "
            f"{', '.join(KNOWN_TIMM_ENCODERS[:6])}, ... (segzoo.models.KNOWN_TIMM_ENCODERS)"
        )


class TimmViTEncoder(nn.Module):
    """A timm ViT returning the patch tokens of some of its blocks as B×C×(H/p)×(W/p) maps.

    Args:
        model_name: A timm model name, with or without its pretrained tag (``vit_base_patch14_reg4_dinov2.lvd142m``).
        out_indices: Block indices (0-based; negative counts from the end) whose outputs are returned, in order.
        out_fractions: Instead of ``out_indices``: depths as fractions of the encoder's depth (block
            ``⌈f × depth⌉ - 1``), so one architecture row reads the same relative depths of any encoder (SETR-MLA:
            a quarter, a half, three quarters and the last block).
        final_norm: Apply the encoder's final norm to every returned map (as DINOv2's ``get_intermediate_layers``
            with ``norm=True``; Segmenter normalises the last block's tokens).
        in_chans, drop_path_rate, img_size: Passed to ``timm.create_model``; ``img_size`` (default: the model's own)
            is the grid the position embeddings are stored for; any other input size is resampled on the fly.
        **kwargs: Other ``timm.create_model`` overrides (e.g. ``embed_dim``, ``depth``, ``num_heads`` for tests).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        out_fractions: Sequence[float] | None = None,
        final_norm: bool = True,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
        img_size: int | None = None,
        device=None,
        dtype=None,
        **kwargs,
    ):
        super().__init__()
        if img_size is not None:
            kwargs["img_size"] = img_size
        self.model_name = model_name
        self._timm_args = dict(num_classes=0, dynamic_img_size=True, in_chans=in_chans, **kwargs)
        check_timm_name(model_name)
        try:
            # built on the device asked for: a ViT-g on "meta" allocates nothing
            with torch.device(device) if device is not None else contextlib.nullcontext():
                self.vit = timm.create_model(
                    model_name, pretrained=False, drop_path_rate=drop_path_rate, **self._timm_args
                ).to(dtype=dtype)
        except TypeError:  # a model that takes no ViT arguments (dynamic_img_size): say what it is, if not a ViT
            with torch.device("meta"):
                check_timm_vit(model_name, timm.create_model(model_name, pretrained=False))
            raise
        check_timm_vit(model_name, self.vit)
        if not final_norm:  # an unused norm would hold parameters without gradients, which DDP refuses
            self.vit.norm = nn.Identity()
        depth = len(self.vit.blocks)
        if out_fractions is not None:
            # block ⌈f × depth⌉ (1-based): 10/24 of 24 blocks is block 10, of 12 blocks block 5 (SETR's T-Base)
            out_indices = [max(0, math.ceil(fraction * depth - 1e-6) - 1) for fraction in out_fractions]
        out_indices = [depth - 1] if out_indices is None else [i % depth if -depth <= i < 0 else i for i in out_indices]
        if not out_indices or any(not 0 <= i < depth for i in out_indices):
            raise ValueError(f"out_indices {tuple(out_indices)} must be block indices in [0, {depth - 1}]")
        self.out_indices = tuple(out_indices)
        self.final_norm = final_norm
        self.patch_size = _patch_size(self.vit)
        self.out_channels = [self.vit.embed_dim] * len(self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # timm returns each block once, in block order: ask for the distinct ones and hand them out as asked
        blocks = sorted(set(self.out_indices))
        maps = dict(zip(blocks, self.forward_intermediates(x, indices=blocks)))
        return [maps[i] for i in self.out_indices]

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None) -> list[torch.Tensor]:
        """timm's ``forward_intermediates`` (patch tokens only, NCHW): block ``indices``, or the last ``n`` blocks for
        an int, every block for None."""
        indices = list(indices) if isinstance(indices, Sequence) else indices
        return self.vit.forward_intermediates(
            x, indices=indices, norm=self.final_norm, output_fmt="NCHW", intermediates_only=True
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations (timm's switch)."""
        self.vit.set_grad_checkpointing(enable)

    @property
    def grad_checkpointing(self) -> bool:
        return bool(getattr(self.vit, "grad_checkpointing", False))

    def no_weight_decay(self) -> set[str]:
        return {f"vit.{name}" for name in self.vit.no_weight_decay()} if hasattr(self.vit, "no_weight_decay") else set()

    def load_pretrained(self) -> None:
        """Fill the encoder with timm's pretrained weights for ``model_name``: timm downloads them (Hugging Face Hub)
        and adapts them (position embeddings to ``img_size``, ``in_chans``) as it would for its own model. Called by
        ``create_model(..., pretrained_encoder=True)``; never a build argument, so a saved model does not download
        them again when it is rebuilt."""
        pretrained = timm.create_model(self.model_name, pretrained=True, **self._timm_args).state_dict()
        own = self.vit.state_dict()
        # strict, but for the final norm, which a head that reads no normalised tokens (SETR) does not have
        self.vit.load_state_dict({k: v for k, v in pretrained.items() if k in own or not k.startswith("norm.")})
