"""Parameter groups and the learning-rate schedule of the papers' recipes.

Parameter rules (what mmsegmentation's ``paramwise_cfg`` expresses with ``custom_keys``):
- ``head_lr_mult``: learning-rate multiplier for everything outside the backbone (``decode_head.``, ``neck.``,
  ``auxiliary_head.``): the newly initialised parts. SegFormer and SETR use 10 (mmseg ``custom_keys={'head':
  dict(lr_mult=10.)}``); mmseg's substring rule leaves the SETR-MLA neck at ×1, here the neck counts as head.
- ``norm_decay_mult``: weight-decay multiplier for the weights and biases of normalisation layers (LayerNorm,
  BatchNorm, GroupNorm), found by module type rather than by name. SegFormer uses 0 (mmseg ``'norm'``).
- ``embed_decay_mult``: weight-decay multiplier for the names the model lists in ``no_weight_decay()`` (position
  embeddings, class tokens; mmseg ``'pos_block'``). SegFormer uses 0.
- ``layer_decay``: optional layer-wise lr decay for ViT backbones (BEiT style): block ``i`` of ``L`` gets
  ``layer_decay ** (L - i)``, the patch embedding and tokens ``layer_decay ** (L + 1)``, the heads 1.
Multipliers combine by product. mmseg applies only the first matching key, so its SegFormer head BatchNorm keeps its
weight decay where here it has none; with wd 0.01 on a handful of parameters the difference is negligible.
Other biases keep their weight decay, as in mmseg.

The schedule is mmsegmentation's: poly decay ``(base_lr - min_lr) * (1 - t / T) ** power + min_lr`` stepped every
iteration, multiplied during the first ``warmup_iters`` by the linear warm-up factor
``1 - (1 - t / warmup_iters) * (1 - warmup_ratio)`` (mmcv ``LrUpdaterHook`` with ``warmup='linear'``).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _norm_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters owned directly by normalisation layers."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            prefix = f"{module_name}." if module_name else ""
            names |= {prefix + n for n, _ in module.named_parameters(recurse=False)}
    return names


def _vit_layer_id(name: str, num_layers: int) -> int:
    """Layer index of a parameter for layer-wise lr decay: 0 for the embeddings, i+1 for block i, L+1 otherwise."""
    if not name.startswith("backbone."):
        return num_layers + 1
    block = re.match(r"backbone\.(?:vit\.)?blocks\.(\d+)\.", name)  # ours, or a timm encoder's (backbone.vit.)
    if block:
        return int(block.group(1)) + 1
    if re.match(r"backbone\.(?:vit\.)?(patch_embed|cls_token|pos_embed|reg_token|dist_token)", name):
        return 0
    return num_layers  # final backbone norm: like the last block


def param_groups(
    model: nn.Module,
    head_lr_mult: float = 1.0,
    norm_decay_mult: float = 1.0,
    embed_decay_mult: float = 1.0,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters into groups carrying ``lr_mult`` and ``decay_mult``.

    Apply the multipliers with :func:`apply_multipliers` once the optimizer exists (the base lr and weight decay
    come from the optimizer's own arguments).

    Args:
        model: The segmentation model (parameter names start with ``backbone.``, ``neck.``, ``decode_head.``,
            ``auxiliary_head.``).
        head_lr_mult: Lr multiplier for parameters outside ``backbone.``.
        norm_decay_mult: Weight-decay multiplier for normalisation-layer parameters.
        embed_decay_mult: Weight-decay multiplier for ``model.no_weight_decay()`` names.
        layer_decay: Layer-wise lr decay factor for a ViT backbone (one with ``blocks``); None disables it.

    Returns:
        Parameter groups for a ``torch.optim`` optimizer, each with ``params``, ``lr_mult``, ``decay_mult`` and
        ``names`` (for inspection).
    """
    norm_names = _norm_parameter_names(model)
    embed_names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    num_layers = 0
    if layer_decay is not None:
        backbone = getattr(model, "backbone", None)
        blocks = getattr(backbone, "blocks", None) or getattr(getattr(backbone, "vit", None), "blocks", None)
        if blocks is None:
            raise ValueError(
                "layer_decay needs a ViT backbone with `backbone.blocks` (SETR, Segmenter); "
                f"{type(model).__name__} has none, so set layer_decay to null"
            )
        num_layers = len(blocks)

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_mult = 1.0 if name.startswith("backbone.") else head_lr_mult
        if layer_decay is not None:
            lr_mult *= layer_decay ** (num_layers + 1 - _vit_layer_id(name, num_layers))
        decay_mult = 1.0
        if name in norm_names:
            decay_mult *= norm_decay_mult
        if name in embed_names:
            decay_mult *= embed_decay_mult
        group = groups.setdefault(
            (lr_mult, decay_mult), {"params": [], "names": [], "lr_mult": lr_mult, "decay_mult": decay_mult}
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def apply_multipliers(optimizer: torch.optim.Optimizer) -> None:
    """Scale each group's ``lr`` and ``weight_decay`` by its ``lr_mult`` and ``decay_mult`` (once)."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_mult", 1.0)
        group["initial_lr"] = group["lr"]
        if "weight_decay" in group:
            group["weight_decay"] = group["weight_decay"] * group.get("decay_mult", 1.0)


class PolyLR(LambdaLR):
    """Poly decay with linear warm-up, stepped every iteration (mmsegmentation's schedule).

    Args:
        optimizer: Wrapped optimizer; each group decays from its own lr to ``min_lr``.
        total_steps: Iterations the decay spans (the recipe's ``max_steps``). None means "the whole run":
            :class:`segzoo.training.SegmentationModule` sets ``total_steps`` from the trainer before the first step.
        power: Poly exponent (SegFormer 1.0, SETR/Segmenter 0.9).
        min_lr: Learning rate reached at ``total_steps`` (absolute, the same for every group as in mmseg).
        warmup_iters: Length of the linear warm-up; 0 disables it.
        warmup_ratio: Warm-up starts at ``warmup_ratio`` times the scheduled lr.
        last_epoch: Index of the last step, for resuming (Lightning restores the state dict instead).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        power: float = 1.0,
        min_lr: float = 0.0,
        warmup_iters: int = 0,
        warmup_ratio: float = 1e-6,
        last_epoch: int = -1,
    ):
        if total_steps is not None and total_steps <= 0:
            raise ValueError(f"PolyLR needs total_steps > 0, got {total_steps}: set trainer.max_steps in the config")
        self.total_steps = total_steps
        self.power = power
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        lambdas = [self._factor_fn(base_lr) for base_lr in base_lrs]
        super().__init__(optimizer, lambdas, last_epoch=last_epoch)

    def _factor_fn(self, base_lr: float):
        def factor(step: int) -> float:
            if self.total_steps is None:
                if step > 0:
                    raise ValueError(
                        "PolyLR has no total_steps: give it in the config, or train through SegmentationModule, which "
                        "sets it from trainer.max_steps (or epochs × batches)"
                    )
                return self.warmup_ratio if self.warmup_iters else 1.0  # step 0, before any decay
            return poly_warmup_lr(
                step, base_lr, self.total_steps, self.power, self.min_lr, self.warmup_iters, self.warmup_ratio
            ) / max(base_lr, 1e-30)

        return factor

    def state_dict(self) -> dict[str, Any]:
        # The lambdas are closures; LambdaLR would try to save them. Everything they need is in these attributes.
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


def poly_warmup_lr(
    step: int,
    base_lr: float,
    total_steps: int,
    power: float = 1.0,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The learning rate at iteration ``step`` (0-based) of mmsegmentation's poly schedule with linear warm-up."""
    progress = min(step, total_steps) / total_steps
    lr = (base_lr - min_lr) * (1 - progress) ** power + min_lr
    if step < warmup_iters:
        lr *= 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return lr
