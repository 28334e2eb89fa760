"""Reading a saved model's folder: segzoo's own (``config.json`` + ``model.safetensors``, as ``save_pretrained``
writes it) and transformers SegFormer folders. :func:`read_config` and :func:`current_pretrained_cfg` are the one
reader of the saved-model schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segzoo._errors import ConversionError, CorruptedFileError
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol
from segzoo.checkpoints._cache import read_converted
from segzoo.checkpoints._checkpoint import Checkpoint, table_cfg_for
from segzoo.checkpoints._table import PretrainedCfg
from segzoo.models._registry import MIT_SIZES

# transformers SegFormer config (hidden_sizes, depths) -> our architecture, derived from the registry's MiT sizes
MIT_BY_WIDTHS = {(size["embed_dims"], size["depths"]): f"segformer-{name}" for name, size in MIT_SIZES.items()}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth")


def read_folder(
    folder: Path,
    model_args: dict[str, Any],
    expected_arch: str | None = None,
    cfg: PretrainedCfg | None = None,
    weights: Path | None = None,
) -> Checkpoint:
    """A segzoo folder (``config.json`` with ``architecture``) or a transformers SegFormer folder; ``weights`` is the
    file to read (default: the folder's ``model.safetensors``, ``pytorch_model.bin`` or ``model.pth``). ``cfg`` is the
    table row whose preprocessing a folder given as ``checkpoint=`` takes when it has none of its own."""
    config_path = folder / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{folder} has no config.json: expected a segzoo folder (config.json + model.safetensors) or a "
            "transformers SegFormer folder"
        )
    config = read_config(config_path)
    weights = weights or _first_existing(folder, WEIGHT_FILES)
    labels: dict[str, str] = {}
    if "architecture" not in config and config.get("model_type") != "segformer":
        raise ConversionError(f"{config_path} describes neither a segzoo model nor a transformers SegFormer")
    try:
        if "architecture" in config:  # ours
            arch, num_classes = config["architecture"], config["num_classes"]
            if not isinstance(num_classes, int):
                raise TypeError(f"num_classes is {num_classes!r}, not a whole number")
            args = dict(config.get("model_args") or {}) | model_args
            pretrained_cfg = current_pretrained_cfg(dict(config.get("pretrained_cfg") or {}))
        else:
            key = (tuple(config["hidden_sizes"]), tuple(config["depths"]))
            labels = dict(config.get("id2label") or {})
            num_classes = len(labels) or config.get("num_labels", 150)
            arch, args, pretrained_cfg = MIT_BY_WIDTHS.get(key), model_args, {}
    except (KeyError, TypeError, ValueError) as err:
        what = f"has no {err}" if isinstance(err, KeyError) else f"is malformed ({err})"
        raise CorruptedFileError(
            f"{config_path} {what}: a segzoo config.json holds architecture, num_classes and model_args (write the "
            "folder again with model.save_pretrained(folder)); a transformers one hidden_sizes, depths and id2label"
        ) from None
    if arch is None:
        raise ConversionError(f"{folder}: a SegFormer with hidden_sizes/depths {key} is not MiT-B0…B5")
    if expected_arch and arch != expected_arch:
        raise ConversionError(f"{folder} holds a {arch}, not a {expected_arch}")
    state, fmt = read_converted(weights)
    names = [labels[str(i)] for i in range(len(labels))] if labels else None
    if not pretrained_cfg and cfg is not None:
        pretrained_cfg = table_cfg_for(cfg, num_classes, folder, names)
    if names and not pretrained_cfg.get("class_names"):
        pretrained_cfg["class_names"] = names
    return Checkpoint(arch, num_classes, args, state, fmt, str(weights), pretrained_cfg)


def read_config(path: Path) -> dict[str, Any]:
    """A folder's ``config.json`` as a dict; a file that is not a JSON object is named."""
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptedFileError(
            f"{path} is not valid JSON ({err}): repair it, or write the folder again with model.save_pretrained(folder)"
        ) from None
    if not isinstance(config, dict):
        raise CorruptedFileError(
            f"{path} holds a JSON {type(config).__name__}, not an object: expected a segzoo or transformers config.json"
        )
    return config


# pretrained_cfg keys of folders saved before the test pipeline was kept as one entry ("eval")
_FLAT_PROTOCOL_KEYS = ("eval_mode", "test_scale", "size_divisor", "stride", "tta", "min_short_side", "train_crop_size")


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


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder} holds none of {', '.join(names)}")
