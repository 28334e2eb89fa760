"""Reading the ``.ckpt`` files ``train.py`` / ``segzoo train`` write (Lightning checkpoints of
``segzoo.training.SegmentationTask``) without the training layer: the network, classes and test pipeline from the
checkpoint's model config (``segzoo_config``, a :class:`~segzoo._model_config.ModelConfig`), the weights from
``model.*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segzoo._errors import ConversionError
from segzoo._model_config import ModelConfig
from segzoo._preprocessing import EvalProtocol
from segzoo.checkpoints._checkpoint import Checkpoint, head_classes, network_args
from segzoo.checkpoints._download import read_state_dict
from segzoo.models._registry import ARCHS


def is_training_checkpoint(header: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether a file's top-level object (``header``, its weights ``state``) is a Lightning checkpoint of the
    training module: hyperparameters beside weights that all belong to ``model``."""
    return isinstance(header.get("hyper_parameters"), dict) and all(k.startswith("model.") for k in state)


def read_training_checkpoint(path: Path, model_args: dict[str, Any]) -> Checkpoint:
    """A ``.ckpt`` that ``train.py`` wrote: the architecture, its arguments, the classes and the test pipeline its
    validation used from the checkpoint's model config (:meth:`ModelConfig.from_checkpoint`: ``segzoo_config``, or
    the hyperparameters of older checkpoints), the weights from ``model.*``."""
    checkpoint = read_state_dict(path)
    config = ModelConfig.from_checkpoint(checkpoint)
    arch = config.architecture
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ConversionError(
            f"{path} is a Lightning checkpoint of a model given as a module, not a registry architecture ({arch!r}): "
            f"load it with segzoo.training.SegmentationTask.load_from_checkpoint({str(path)!r}).model"
        )
    state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    num_classes = config.num_classes or head_classes(state, arch)
    args = network_args(config.model_args | model_args, "segzoo", arch, state)
    pretrained_cfg = dict(config.pretrained_cfg) | {"num_classes": num_classes}
    return Checkpoint(arch, num_classes, args, state, "segzoo", str(path), pretrained_cfg)


def training_checkpoint_protocol(checkpoint: dict[str, Any]) -> EvalProtocol | None:
    """The test pipeline a ``train.py`` run validated with, as its checkpoint's model config records it
    (:meth:`ModelConfig.from_checkpoint`); ``None`` when it says nothing (a module trained on plain dataloaders)."""
    return ModelConfig.from_checkpoint(checkpoint).eval_protocol
