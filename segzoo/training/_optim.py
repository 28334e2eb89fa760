"""Parameter groups and the learning-rate schedules of the papers' recipes.

Parameter groups (:func:`param_groups`; the recipe gives the rules as data, ``model.custom_keys`` and friends):

- ``custom_keys``: mmsegmentation's ``paramwise_cfg.custom_keys``, applied as mmengine's
  ``DefaultOptimWrapperConstructor`` (mmseg 1.x) and mmcv 1.x's ``DefaultOptimizerConstructor`` (mmseg 0.x, NVlabs)
  apply it: a parameter whose full name contains a key takes that key's ``lr_mult`` and ``decay_mult`` (each 1 when
  left out); when several keys are contained, only the longest applies, ties going to the alphabetically first; a
  parameter that matches a key follows none of the rules below but ``layer_decay``. The keys are substrings of
  segzoo's parameter names (``model.named_parameters()``). Where segzoo keeps the publisher's names (the MiT encoder
  and SegFormer head of the NVlabs rows, SETR, Segmenter) the publisher's keys act unchanged; where the names differ
  (mmseg's MiT: its stage norms ``layers.{i}.2`` are our ``backbone.norm{i+1}``) the recipe adds a key that gives
  every parameter what mmseg gives its counterpart. reference/test_training_parity.py checks every parameter's lr
  and weight decay against mmseg's own ``build_optim_wrapper``.
- ``head_lr_mult``: lr multiplier for everything outside the backbone (``decode_head.``, ``neck.``,
  ``auxiliary_head.``), for parameters no custom key matches.
- ``norm_decay_mult``: weight-decay multiplier for the parameters of normalisation layers (LayerNorm, BatchNorm,
  GroupNorm, found by module type), for parameters no custom key matches.
- ``embed_decay_mult``: weight-decay multiplier for the names the model lists in ``no_weight_decay()`` (position
  embeddings, class tokens), for parameters no custom key matches.
- ``layer_decay``: optional layer-wise lr decay for ViT backbones (BEiT style): block ``i`` of ``L`` gets
  ``layer_decay ** (L - i)``, the patch embedding and tokens ``layer_decay ** (L + 1)``, the heads 1; it multiplies
  whatever the rules above gave.
Multipliers of the last three combine by product; other biases keep their weight decay, as in mmseg.

Schedules, stepped every iteration, one class per origin (both are pure functions of the iteration, so a resumed run
continues exactly, and a run resumed with another ``trainer.max_steps`` follows the new span):

- :class:`PolyLR`: mmcv 1.x's ``LrUpdaterHook`` (mmseg 0.x, the NVlabs SegFormer code): poly decay
  ``(base_lr - min_lr) * (1 - t / T) ** power + min_lr`` over the whole run, multiplied during the first
  ``warmup_iters`` by the linear warm-up factor ``1 - (1 - t / warmup_iters) * (1 - warmup_ratio)``.
- :class:`MMEnginePolyLR`: mmseg 1.x's ``param_scheduler`` as mmengine steps it: ``LinearLR(start_factor=
  warmup_ratio, begin=0, end=warmup_iters)``, then ``PolyLR(eta_min=min_lr, power, begin=warmup_iters,
  end=T)``. mmengine's schedulers reach their end value one step before their ``end`` (``total_iters = end - begin -
  1``): the warm-up reaches the base lr at ``warmup_iters - 1``, the decay ``min_lr`` at the last iteration ``T - 1``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
CUSTOM_KEY_FIELDS = ("lr_mult", "decay_mult")


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


def _checked_custom_keys(custom_keys: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    checked = {}
    for key, rule in (custom_keys or {}).items():
        if not isinstance(key, str) or not key or not isinstance(rule, Mapping) or set(rule) - set(CUSTOM_KEY_FIELDS):
            raise ValueError(
                f"custom_keys maps a non-empty name substring to {{lr_mult: x, decay_mult: y}} (either may be left "
                f"out), got {key!r}: {rule!r}"
            )
        checked[key] = {field: float(rule.get(field, 1.0)) for field in CUSTOM_KEY_FIELDS}
    return checked


def matching_custom_key(name: str, custom_keys: Mapping[str, Any]) -> str | None:
    """The one custom key that applies to parameter ``name``: the longest key contained in it, ties going to the
    alphabetically first (mmengine's and mmcv's rule); None when no key is contained."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in name:
            return key
    return None


def param_groups(
    model: nn.Module,
    head_lr_mult: float = 1.0,
    norm_decay_mult: float = 1.0,
    embed_decay_mult: float = 1.0,
    layer_decay: float | None = None,
    custom_keys: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters into groups carrying ``lr_mult`` and ``decay_mult``.

    Apply the multipliers with :func:`apply_multipliers` once the optimizer exists (the base lr and weight decay
    come from the optimizer's own arguments). The rules are described in this module's docstring.

    Args:
        model: The segmentation model (parameter names start with ``backbone.``, ``neck.``, ``decode_head.``,
            ``auxiliary_head.``).
        head_lr_mult: Lr multiplier for parameters outside ``backbone.``.
        norm_decay_mult: Weight-decay multiplier for normalisation-layer parameters.
        embed_decay_mult: Weight-decay multiplier for ``model.no_weight_decay()`` names.
        layer_decay: Layer-wise lr decay factor for a ViT backbone (one with ``blocks``); None disables it.
        custom_keys: ``{name substring: {lr_mult: x, decay_mult: y}}``, mmseg's ``paramwise_cfg.custom_keys``; a
            parameter that matches one takes its multipliers instead of the three rules above.

    Returns:
        Parameter groups for a ``torch.optim`` optimizer, each with ``params``, ``lr_mult``, ``decay_mult`` and
        ``names`` (for inspection).
    """
    keys = _checked_custom_keys(custom_keys)
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
        key = matching_custom_key(name, keys)
        if key is not None:
            lr_mult, decay_mult = keys[key]["lr_mult"], keys[key]["decay_mult"]
        else:
            lr_mult = 1.0 if name.startswith("backbone.") else head_lr_mult
            decay_mult = 1.0
            if name in norm_names:
                decay_mult *= norm_decay_mult
            if name in embed_names:
                decay_mult *= embed_decay_mult
        if layer_decay is not None:
            lr_mult *= layer_decay ** (num_layers + 1 - _vit_layer_id(name, num_layers))
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


class _IterationSchedule(LRScheduler):
    """A learning rate that is a pure function of the iteration and of the group's initial lr (:meth:`lr_at`).

    ``total_steps=None`` means "the whole run": :class:`segzoo.training.SegmentationTask` sets it from the trainer
    (``max_steps``) before the first step. Resuming (``load_state_dict``) restores the position in the schedule, not
    its definition: the span, power, floor and warm-up are the config's, so a run resumed with a larger
    ``trainer.max_steps`` continues on the schedule of the longer run (with a warning), where restoring the old span
    would train on at lr 0.
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
            raise ValueError(
                f"{type(self).__name__} needs total_steps > 0, got {total_steps}: set trainer.max_steps in the config"
            )
        if warmup_iters < 0 or not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(
                f"warmup_iters must be >= 0 and warmup_ratio in [0, 1], got {warmup_iters} and {warmup_ratio}"
            )
        self.total_steps = total_steps
        self.power = power
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, last_epoch=last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        """The learning rate at iteration ``step`` (0-based) of a group whose initial lr is ``base_lr``."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if self.total_steps is None and step > 0:
            raise ValueError(
                f"{type(self).__name__} has no total_steps: give it in the config, or train through "
                "SegmentationTask, which sets it from trainer.max_steps (or epochs × batches)"
            )
        return [self.lr_at(step, base_lr) for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the position (the iteration) and sets every group's lr for it under this schedule."""
        saved_span = state_dict.get("total_steps")
        if saved_span is not None and self.total_steps is not None and saved_span != self.total_steps:
            warnings.warn(
                f"resuming at iteration {state_dict['last_epoch']} with a schedule of {self.total_steps} iterations "
                f"(the checkpoint's ran over {saved_span}): the learning rate follows the new span from here on",
                stacklevel=2,
            )
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class PolyLR(_IterationSchedule):
    """Poly decay with linear warm-up as mmcv 1.x's ``LrUpdaterHook`` computes it (mmseg 0.x; the NVlabs SegFormer
    recipes), stepped every iteration.

    Args:
        optimizer: Wrapped optimizer; each group decays from its own lr to ``min_lr``.
        total_steps: Iterations the decay spans (the recipe's ``max_steps``). None means "the whole run":
            :class:`segzoo.training.SegmentationTask` sets ``total_steps`` from the trainer before the first step.
        power: Poly exponent (SegFormer 1.0, SETR/Segmenter 0.9).
        min_lr: Learning rate reached at ``total_steps`` (absolute, the same for every group as in mmseg).
        warmup_iters: Length of the linear warm-up; 0 disables it.
        warmup_ratio: Warm-up starts at ``warmup_ratio`` times the scheduled lr.
        last_epoch: Index of the last step, for resuming (Lightning restores the state dict instead).
    """

    def lr_at(self, step: int, base_lr: float) -> float:
        if self.total_steps is None:  # step 0, before any decay
            return base_lr * (self.warmup_ratio if self.warmup_iters else 1.0)
        return poly_warmup_lr(
            step, base_lr, self.total_steps, self.power, self.min_lr, self.warmup_iters, self.warmup_ratio
        )


class MMEnginePolyLR(_IterationSchedule):
    """mmseg 1.x's schedule as mmengine steps it: ``LinearLR`` from ``warmup_ratio`` × lr to the lr over
    iterations ``[0, warmup_iters)``, then ``PolyLR`` from the lr to ``min_lr`` over ``[warmup_iters, total_steps)``.

    Unlike :class:`PolyLR` (mmcv 1.x), the decay starts after the warm-up and each phase reaches its end value one
    iteration before its end (mmengine's ``total_iters = end - begin - 1``): iteration ``warmup_iters - 1`` runs at
    the full lr, the last iteration at ``min_lr``.

    Args:
        optimizer: Wrapped optimizer; each group decays from its own lr to ``min_lr``.
        total_steps: The run's iterations (mmseg's ``end`` of the PolyLR; the recipe's ``max_steps``). None means
            "the whole run", set by :class:`segzoo.training.SegmentationTask`.
        power: Poly exponent (SegFormer 1.0, SETR/Segmenter 0.9).
        min_lr: ``eta_min``, absolute, the same for every group.
        warmup_iters: ``end`` of the LinearLR (1500 for SegFormer); 0: no warm-up, the decay starts at 0.
        warmup_ratio: LinearLR's ``start_factor`` (1e-6 for SegFormer).
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
        if total_steps is not None and total_steps <= warmup_iters:
            raise ValueError(
                f"MMEnginePolyLR needs total_steps > warmup_iters, got {total_steps} <= {warmup_iters}: the decay "
                "must have iterations left after the warm-up"
            )
        super().__init__(optimizer, total_steps, power, min_lr, warmup_iters, warmup_ratio, last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        return mmengine_poly_lr(
            step, base_lr, self.total_steps, self.power, self.min_lr, self.warmup_iters, self.warmup_ratio
        )


def poly_warmup_lr(
    step: int,
    base_lr: float,
    total_steps: int,
    power: float = 1.0,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The learning rate at iteration ``step`` (0-based) of mmcv 1.x's poly schedule with linear warm-up."""
    progress = min(step, total_steps) / total_steps
    lr = (base_lr - min_lr) * (1 - progress) ** power + min_lr
    if step < warmup_iters:
        lr *= 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return lr


def mmengine_poly_lr(
    step: int,
    base_lr: float,
    total_steps: int | None,
    power: float = 1.0,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The learning rate at iteration ``step`` (0-based) of mmengine's ``LinearLR(0, warmup_iters)`` then
    ``PolyLR(warmup_iters, total_steps)`` (the closed form of their chained updates)."""
    if step < warmup_iters:
        span = warmup_iters - 1  # LinearLR's total_iters
        return base_lr * (warmup_ratio + (1 - warmup_ratio) * (step / span if span else 0.0))
    if total_steps is None:  # the decay's first iteration needs no span
        return base_lr
    span = total_steps - warmup_iters - 1  # PolyLR's total_iters
    progress = min(step - warmup_iters, span) / span if span > 0 else 0.0
    return (base_lr - min_lr) * (1 - progress) ** power + min_lr
