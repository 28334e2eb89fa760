"""Reading a weights file that carries no config: a ``.safetensors`` beside its folder's ``config.json``, a
``train.py`` checkpoint, or a bare file whose architecture its keys and shapes tell
(:mod:`segzoo.checkpoints._arch_from_weights`), with its publisher's test pipeline from the table where the format
has one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from segzoo._errors import ConversionError
from segzoo.checkpoints._arch_from_weights import ArchMatch, infer_architecture
from segzoo.checkpoints._cache import read_converted
from segzoo.checkpoints._checkpoint import Checkpoint, head_classes, network_args
from segzoo.checkpoints._convert import CONVERTERS, detect_format, unwrap_checkpoint
from segzoo.checkpoints._download import read_state_dict
from segzoo.checkpoints._folder import read_folder
from segzoo.checkpoints._lightning import is_training_checkpoint, read_training_checkpoint
from segzoo.checkpoints._table import get_pretrained_cfg, list_pretrained

log = logging.getLogger("segzoo")

# Formats whose files are their publishers' own releases: they carry no test pipeline segzoo reads (official SETR
# files hold an mmseg 0.x config and class names, the latter in another order than their labels), so the table's rows
# of that publisher give it.
PUBLISHER_FORMATS = ("segmenter-official", "setr-official")
# pretrained_cfg keys that describe one published file rather than the protocol its kind of file shares
_FILE_KEYS = ("name", "metrics", "source", "sha256", "notes")


def read_file(path: Path, model_args: dict[str, Any]) -> Checkpoint:
    """A file that describes itself: beside its folder's ``config.json``, a ``train.py`` checkpoint, or a bare weights
    file read as ``load(<the architecture its keys and shapes tell>, checkpoint=path)``."""
    if path.suffix == ".safetensors" and (path.parent / "config.json").exists():  # described by its folder's config
        return read_folder(path.parent, model_args, weights=path)
    header = read_state_dict(path, shapes_only=True)
    state = unwrap_checkpoint(header)
    if is_training_checkpoint(header, state):
        return read_training_checkpoint(path, model_args)
    try:
        fmt = detect_format(state)
    except ConversionError as err:
        raise ConversionError(f"{path} does not say which architecture it is for, and {err}") from None
    match = infer_architecture(CONVERTERS[fmt](state), meta=header.get("meta"), source=str(path), fmt=fmt)
    log.info("%s: inferred architecture %s", path.name, match.describe())
    weights, fmt = read_converted(path)
    args = ({"img_size": match.img_size} if match.img_size else {}) | model_args
    args = network_args(args, fmt, match.arch, weights)
    num_classes = head_classes(weights, match.arch)
    return Checkpoint(match.arch, num_classes, args, weights, fmt, str(path), _bare_file_cfg(fmt, match))


def _bare_file_cfg(fmt: str, match: ArchMatch) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a bare file: its publisher's protocol from the table where the format has one,
    completed with class names from the file's mmseg ``meta``."""
    cfg = published_protocol(fmt, match.arch, match.num_classes, match.img_size) if fmt in PUBLISHER_FORMATS else {}
    if match.class_names and not cfg.get("class_names"):
        cfg["class_names"] = list(match.class_names)
    return cfg


def published_protocol(fmt: str, arch: str, num_classes: int, img_size: int | None) -> dict[str, Any]:
    """The preprocessing and evaluation protocol of the table rows a bare file is one of: same format, architecture,
    classes and crop (official Segmenter and SETR files carry no config). Rows that differ only in training (40k or
    80k iterations) share it; rows that disagree give nothing. Empty when no row fits."""
    rows = [
        cfg
        for name in list_pretrained()
        if (cfg := get_pretrained_cfg(name)).format == fmt
        and cfg.arch == arch
        and cfg.num_classes == num_classes
        and (img_size is None or cfg.crop_size[0] == img_size)
    ]
    protocols = [{k: v for k, v in cfg.to_dict().items() if k not in _FILE_KEYS} for cfg in rows]
    if not protocols or any(p != protocols[0] for p in protocols):
        return {}
    if len(rows) == 1:
        return rows[0].to_dict()
    return protocols[0] | {"notes": f"one of {', '.join(cfg.name for cfg in rows)} (same protocol)"}
