"""A saved model's config: what rebuilds it and what using it needs, in one shape wherever segzoo saves a model.

:class:`ModelConfig` is the whole of a ``save_pretrained`` folder's ``config.json``, the JSON under an ONNX file's
``segzoo.config`` metadata key, and the ``segzoo_config`` entry of a ``train.py`` Lightning checkpoint. Its readers
(:meth:`ModelConfig.from_dict`, :meth:`~ModelConfig.from_onnx_metadata`, :meth:`~ModelConfig.from_checkpoint`) also
take the shapes segzoo wrote before: ``config.json`` files whose test pipeline was flat keys, ONNX files with only
``segzoo.eval_protocol`` / ``segzoo.class_names`` / ``segzoo.palette``, and checkpoints with only Lightning's
hyperparameters. Plain values only, and no torch: the ONNX runtime reads it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol
from segzoo._version import __version__

__all__ = ["CHECKPOINT_KEY", "ONNX_KEY", "ModelConfig"]

ONNX_KEY = "segzoo.config"  # metadata_props key of an exported file
CHECKPOINT_KEY = "segzoo_config"  # entry of a Lightning checkpoint

# pretrained_cfg keys of config.json files saved before the test pipeline was kept as one entry ("eval")
_FLAT_PROTOCOL_KEYS = ("eval_mode", "test_scale", "size_divisor", "stride", "tta", "min_short_side", "train_crop_size")


@dataclass(frozen=True)
class ModelConfig:
    """How to rebuild a saved model and use it.

    Attributes:
        architecture: Registry architecture (``segzoo.list_models()``); ``None`` for a model segzoo cannot rebuild
            by name (an ``nn.Module`` trained or exported as is).
        num_classes: Number of classes the model predicts.
        model_args: ``create_model`` arguments that rebuild the network (its ``build_args``).
        pretrained_cfg: The model's ``pretrained_cfg``: ``name``, ``source``, ``class_names``, ``palette``, the test
            pipeline under ``eval`` (``EvalProtocol.to_dict()``), and the table row's other fields.
        segzoo_version: The segzoo that wrote it.
    """

    architecture: str | None = None
    num_classes: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    segzoo_version: str | None = __version__

    @property
    def name(self) -> str | None:
        return self.pretrained_cfg.get("name")

    @property
    def class_names(self) -> list[str] | None:
        names = self.pretrained_cfg.get("class_names")
        return list(names) if names else None

    @property
    def palette(self) -> list[list[int]] | None:
        palette = self.pretrained_cfg.get("palette")
        return [[int(v) for v in color] for color in palette] if palette else None

    @property
    def eval_protocol(self) -> EvalProtocol | None:
        """The test pipeline the weights are scored with, or ``None`` when the config states none."""
        values = self.pretrained_cfg.get("eval")
        return EvalProtocol.from_dict(values) if values else None

    @classmethod
    def of(cls, model: Any, pretrained_cfg: Mapping[str, Any] | None = None) -> ModelConfig:
        """The config of a model: its ``arch_name``, ``num_classes``, ``build_args`` and ``pretrained_cfg`` (or the
        ``pretrained_cfg`` given), read as attributes so that any module may be described."""
        cfg = dict(getattr(model, "pretrained_cfg", None) or {}) if pretrained_cfg is None else dict(pretrained_cfg)
        num_classes = getattr(model, "num_classes", None)
        return cls(
            architecture=getattr(model, "arch_name", None) or None,
            num_classes=None if num_classes is None else int(num_classes),
            model_args=dict(getattr(model, "build_args", None) or {}),
            pretrained_cfg=_plain(cfg),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, as ``config.json``, ``segzoo.config`` and ``segzoo_config`` hold them."""
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "model_args": dict(self.model_args),
            "pretrained_cfg": dict(self.pretrained_cfg),
            "segzoo_version": self.segzoo_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """The inverse of :meth:`to_dict`, also reading ``config.json`` files of older segzoo (a test pipeline kept
        as flat ``pretrained_cfg`` keys). Keys it does not know (from a newer segzoo) are left out.

        Raises:
            KeyError: No ``architecture``.
            TypeError: ``num_classes`` is not a whole number, or ``model_args`` / ``pretrained_cfg`` not objects.
        """
        if "architecture" not in values:
            raise KeyError("architecture")
        num_classes = values.get("num_classes")
        if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)):
            raise TypeError(f"num_classes is {num_classes!r}, not a whole number")
        for name in ("model_args", "pretrained_cfg"):
            if not isinstance(values.get(name) or {}, Mapping):
                raise TypeError(f"{name} is {values[name]!r}, not an object")
        return cls(
            architecture=values["architecture"],
            num_classes=num_classes,
            model_args=dict(values.get("model_args") or {}),
            pretrained_cfg=current_pretrained_cfg(dict(values.get("pretrained_cfg") or {})),
            segzoo_version=values.get("segzoo_version"),
        )

    @classmethod
    def from_onnx_metadata(cls, metadata: Mapping[str, str]) -> ModelConfig | None:
        """The config of an exported file, from its ``metadata_props``: ``segzoo.config``, else (files exported by
        older segzoo) the test pipeline, class names and palette under their own keys; ``None`` without either."""
        if ONNX_KEY in metadata:
            return cls.from_dict(json.loads(metadata[ONNX_KEY]))
        found = {cfg_key: json.loads(metadata[key]) for key, cfg_key in _OLD_ONNX_KEYS.items() if key in metadata}
        if not found:
            return None
        names = found.get("class_names")
        return cls(num_classes=len(names) if names else None, pretrained_cfg=found, segzoo_version=None)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> ModelConfig:
        """The config of a ``train.py`` Lightning checkpoint (the loaded dict): its ``segzoo_config``, else
        (checkpoints of older segzoo) what the module's and DataModule's hyperparameters and the recorded
        ``eval_protocol`` say."""
        if checkpoint.get(CHECKPOINT_KEY):
            return cls.from_dict(checkpoint[CHECKPOINT_KEY])
        hparams = checkpoint.get("hyper_parameters") or {}
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        arch = hparams.get("model")
        num_classes = hparams.get("num_classes")
        names = hparams.get("class_names") or data.get("classes")
        cfg: dict[str, Any] = {
            "num_classes": num_classes,
            "class_names": list(names) if isinstance(names, (list, tuple)) and len(names) == num_classes else None,
        }
        protocol = _checkpoint_protocol(checkpoint, hparams, data)
        if protocol is not None:
            cfg |= {"mean": list(protocol.mean), "std": list(protocol.std), "eval": protocol.to_dict()}
        args = {k: v for k, v in (hparams.get("model_args") or {}).items() if k not in _TRAINING_SWITCHES}
        return cls(
            architecture=arch if isinstance(arch, str) else None,
            num_classes=num_classes,
            model_args=args,
            pretrained_cfg=cfg,
            segzoo_version=None,
        )


# The keys of files exported before segzoo.config, and where their values sit in pretrained_cfg
_OLD_ONNX_KEYS = {"segzoo.eval_protocol": "eval", "segzoo.class_names": "class_names", "segzoo.palette": "palette"}
# Training switches in a run's model_args that say how it was trained, not what the network is.
_TRAINING_SWITCHES = ("pretrained_encoder", "freeze_encoder", "grad_checkpointing")


def _checkpoint_protocol(checkpoint: Mapping[str, Any], hparams: Mapping, data: Mapping) -> EvalProtocol | None:
    """The test pipeline an older checkpoint records: its ``eval_protocol``, else (older still) the DataModule's
    normalisation and test resize with the module's evaluation mode; ``None`` when neither says anything."""
    if checkpoint.get("eval_protocol"):
        return EvalProtocol.from_dict(checkpoint["eval_protocol"])
    if not data.get("mean"):
        return None
    slide = hparams.get("eval_mode") == "slide" and hparams.get("eval_crop") and hparams.get("eval_stride")
    return EvalProtocol(
        mean=data["mean"], std=data["std"], test_scale=data.get("eval_scale"), size_divisor=data.get("size_divisor"),
        mode="slide" if slide else "whole", crop=hparams.get("eval_crop") if slide else None,
        stride=hparams.get("eval_stride") if slide else None,
    )  # fmt: skip


def current_pretrained_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json``'s ``pretrained_cfg`` in today's shape. Folders saved by segzoo before it kept the test
    pipeline as one entry (``eval``, an :class:`EvalProtocol`) held it as flat keys: ``eval_mode``, ``test_scale``,
    ``size_divisor``, ``stride``, ``min_short_side``, ``tta``, and ``crop_size`` meaning the window in slide mode
    (the training crop then in ``train_crop_size``)."""
    if "eval" in cfg or not ("eval_mode" in cfg or "mean" in cfg):
        return cfg
    mode = cfg.get("eval_mode") or "whole"
    protocol = EvalProtocol(
        mean=cfg.get("mean") or IMAGENET_MEAN, std=cfg.get("std") or IMAGENET_STD, test_scale=cfg.get("test_scale"),
        size_divisor=cfg.get("size_divisor"), mode=mode, crop=cfg.get("crop_size") if mode == "slide" else None,
        stride=cfg.get("stride") if mode == "slide" else None, tta_style=cfg.get("tta") or "mmseg-0.x",
        min_short_side=cfg.get("min_short_side"),
    )  # fmt: skip
    current = {key: value for key, value in cfg.items() if key not in _FLAT_PROTOCOL_KEYS}
    current["crop_size"] = cfg.get("train_crop_size") or (cfg.get("crop_size") if mode == "whole" else None)
    return current | {"mean": list(protocol.mean), "std": list(protocol.std), "eval": protocol.to_dict()}


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: the values a JSON round trip gives back, so written and read configs compare
    equal."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
