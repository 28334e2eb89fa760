"""The network a training run starts from, and the test pipeline its weights came with.

``model`` and ``init_from`` of :class:`~segzoo.training.SegmentationTask` choose it: a registry architecture with fresh
weights (ImageNet encoder weights with ``pretrained_encoder``), the network of a checkpoint (``init_from``: a published
name, a file or folder ``segzoo.load`` reads, a ``train.py`` ``.ckpt``), or an ``nn.Module`` given as is (optionally
filled from a ``.ckpt`` of the training module). Another number of classes than the checkpoint's re-initialises the
class-specific layers (``segzoo.checkpoints.replace_classes``, ``load_except_classes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from segzoo._api import SegmentationModel
from segzoo._errors import CheckpointReadError
from segzoo._model_config import ModelConfig
from segzoo._preprocessing import EvalProtocol
from segzoo.checkpoints import load_except_classes, read_state_dict, replace_classes

TRAINING_SWITCHES = ("freeze_encoder", "grad_checkpointing")  # model_args that say how a model trains


def build_network(
    model: str | nn.Module | None,
    num_classes: int | None,
    model_args: dict[str, Any],
    init_from: str | None,
    pretrained_encoder: bool,
) -> tuple[nn.Module, EvalProtocol | None]:
    """The network, and the test pipeline its weights were published or saved with while they are those weights
    with their own classes (``None`` for fresh weights, or a new number of classes)."""
    if isinstance(model, nn.Module):
        if init_from is None:
            return model, _pipeline_of(model, num_classes)
        if not str(init_from).endswith(".ckpt"):
            raise ValueError(
                "init_from with a model given as an nn.Module only accepts a Lightning .ckpt file; to start from a "
                "published checkpoint, give the architecture name as `model` (or leave it out) instead"
            )
        return model, _fill_from_training_checkpoint(model, init_from, num_classes)
    if init_from is not None:
        args = {k: v for k, v in model_args.items() if k not in TRAINING_SWITCHES}
        if str(init_from).endswith(".ckpt"):  # a missing or truncated file is named as init_from's
            read_state_dict(init_from, "init_from")
        if isinstance(model, str) and not str(init_from).endswith(".ckpt") and Path(init_from).is_file():
            net = SegmentationModel.from_pretrained(model, checkpoint=init_from, **args)  # weights for this arch
        else:  # checkpoint name, hf-hub: id, saved folder, or a .ckpt of train.py (the network it holds, as built)
            net = SegmentationModel.from_pretrained(init_from, **args)
        if model is not None and net.arch_name != model:
            raise ValueError(
                f"init_from={init_from!r} is a {net.arch_name} checkpoint but model={model!r}; set model to "
                f"{net.arch_name!r} or leave it out"
            )
        pipeline = _pipeline_of(net, num_classes)  # the weights' own classes, before any new head
        if num_classes is not None and num_classes != net.num_classes:
            net = replace_classes(net, num_classes)
        switches = {k: v for k, v in model_args.items() if k in TRAINING_SWITCHES}
        # segzoo.load returns eval mode; training needs dropout, drop path and BN statistics on
        return net.configure_training(**switches).train(), pipeline
    if model is None:
        raise ValueError("give `model` (an architecture name such as 'segformer-b0', or an nn.Module) or `init_from`")
    if num_classes is None:
        raise ValueError(
            f"model={model!r} needs num_classes; it is linked from the DataModule's num_classes by train.py, or set "
            "model.num_classes in the config"
        )
    return SegmentationModel.from_arch(
        model, num_classes=num_classes, pretrained_encoder=pretrained_encoder, **model_args
    ), None


def _pipeline_of(model: nn.Module, num_classes: int | None) -> EvalProtocol | None:
    """The test pipeline ``model``'s weights carry, when they carry one and are of ``num_classes`` classes."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if not cfg.get("eval") or not _same_classes(cfg.get("num_classes"), num_classes):
        return None
    return EvalProtocol.of(model)


def _same_classes(weights: int | None, asked: int | None) -> bool:
    return weights is None or asked is None or weights == asked


def _fill_from_training_checkpoint(net: nn.Module, path: str, num_classes: int | None) -> EvalProtocol | None:
    """Copies the ``model.*`` weights of a Lightning checkpoint into ``net`` (class-specific ones whose shapes
    differ stay fresh); returns the checkpoint's test pipeline when its classes are ``num_classes``."""
    checkpoint = read_state_dict(path, "init_from")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointReadError(f"init_from checkpoint {path} has no state_dict: not a Lightning checkpoint")
    load_except_classes(
        net,
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")},
        f"init_from checkpoint {path}",
    )
    saved = ModelConfig.from_checkpoint(checkpoint)
    return saved.eval_protocol if _same_classes(saved.num_classes, num_classes) else None
