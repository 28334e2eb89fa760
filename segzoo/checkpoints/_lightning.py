"""Reading the ``.ckpt`` files ``train.py`` / ``segzoo train`` write (Lightning checkpoints of
``segzoo.training.SegmentationTask``) without the training layer: the network from the module's hyperparameters, the
weights from ``model.*``, the test pipeline from the checkpoint's ``eval_protocol``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segzoo._errors import ConversionError
from segzoo._preprocessing import EvalProtocol
from segzoo.checkpoints._checkpoint import Checkpoint, head_classes, network_args
from segzoo.checkpoints._download import read_state_dict
from segzoo.models._registry import ARCHS

# Training switches in a run's model_args that say how it was trained, not what the network is.
TRAINING_SWITCHES = ("pretrained_encoder", "freeze_encoder", "grad_checkpointing")


def is_training_checkpoint(header: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether a file's top-level object (``header``, its weights ``state``) is a Lightning checkpoint of the
    training module: hyperparameters beside weights that all belong to ``model``."""
    return isinstance(header.get("hyper_parameters"), dict) and all(k.startswith("model.") for k in state)


def read_training_checkpoint(path: Path, model_args: dict[str, Any]) -> Checkpoint:
    """A ``.ckpt`` that ``train.py`` wrote: the architecture, its arguments and the classes from the module's
    hyperparameters, the weights from ``model.*``, the classes' names and the test pipeline its validation used."""
    checkpoint = read_state_dict(path)
    hparams = checkpoint["hyper_parameters"]
    arch = hparams.get("model")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ConversionError(
            f"{path} is a Lightning checkpoint of a model given as a module, not a registry architecture ({arch!r}): "
            f"load it with segzoo.training.SegmentationTask.load_from_checkpoint({str(path)!r}).model"
        )
    state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    build_args = {k: v for k, v in (hparams.get("model_args") or {}).items() if k not in TRAINING_SWITCHES}
    num_classes = hparams.get("num_classes") or head_classes(state, arch)
    args = network_args(build_args | model_args, "segzoo", arch, state)
    return Checkpoint(arch, num_classes, args, state, "segzoo", str(path), _trained_cfg(checkpoint, num_classes))


def training_checkpoint_protocol(checkpoint: dict[str, Any]) -> EvalProtocol | None:
    """The test pipeline a ``train.py`` run validated with, as its checkpoint records it (``eval_protocol``, the
    :class:`EvalProtocol` as ``to_dict`` writes it). A checkpoint written before segzoo recorded it holds the same
    facts in its hyperparameters (the DataModule's normalisation and test resize, the module's evaluation mode);
    ``None`` when neither says anything (a module trained on plain dataloaders)."""
    if checkpoint.get("eval_protocol"):
        return EvalProtocol.from_dict(checkpoint["eval_protocol"])
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    hparams = checkpoint.get("hyper_parameters") or {}
    if not data.get("mean"):
        return None
    slide = hparams.get("eval_mode") == "slide" and hparams.get("eval_crop") and hparams.get("eval_stride")
    return EvalProtocol(
        mean=data["mean"], std=data["std"], test_scale=data.get("eval_scale"), size_divisor=data.get("size_divisor"),
        mode="slide" if slide else "whole", crop=hparams.get("eval_crop") if slide else None,
        stride=hparams.get("eval_stride") if slide else None,
    )  # fmt: skip


def _trained_cfg(checkpoint: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a model trained here: its classes and the test pipeline its validation used."""
    hparams = checkpoint.get("hyper_parameters") or {}
    names = hparams.get("class_names") or (checkpoint.get("datamodule_hyper_parameters") or {}).get("classes")
    cfg: dict[str, Any] = {
        "num_classes": num_classes,
        "class_names": list(names) if isinstance(names, (list, tuple)) and len(names) == num_classes else None,
    }
    protocol = training_checkpoint_protocol(checkpoint)
    if protocol is not None:
        cfg |= {"mean": list(protocol.mean), "std": list(protocol.std), "eval": protocol.to_dict()}
    return cfg
