"""Reading a saved model's folder: segzoo's own (``config.json`` + ``model.safetensors``, as ``save_pretrained``
writes it) and transformers SegFormer folders. A segzoo ``config.json`` is read by the one reader of the saved-model
schema, :meth:`segzoo._model_config.ModelConfig.from_dict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segzoo._errors import ConversionError, CorruptedFileError
from segzoo._model_config import ModelConfig
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
            saved = ModelConfig.from_dict(config)
            arch, num_classes = saved.architecture, config["num_classes"]  # a segzoo folder always states it
            args = saved.model_args | model_args
            pretrained_cfg = dict(saved.pretrained_cfg)
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


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder} holds none of {', '.join(names)}")
