"""``segzoo.load``: a published checkpoint (or any supported file, folder or Hub repo) as a ready model.

Resolution of ``segzoo.load(name, checkpoint=None)``; a name means one thing, whatever lies in the working folder:
- ``hf-hub:org/repo[@rev]``: a segzoo (``config.json`` + ``model.safetensors``) or transformers SegFormer repo;
- ``local-dir:PATH``, or a name written as a path (absolute, starting with ``.`` or ``~``, holding a ``/``, or ending
  in a weights suffix such as ``.safetensors``, ``.pth``, ``.ckpt``): a local folder or file, self-described by its
  ``config.json`` or by its keys;
- a checkpoint name from ``checkpoints.yaml``: always its architecture, preprocessing and published weights
  (downloaded and converted once, then cached as safetensors), even where a folder of that name exists (a warning
  then says how to load the folder);
- an architecture name with ``checkpoint=``: weights in any supported format for that architecture.
A bare name that is neither, but names a local folder or file, is refused with the path to write instead (timm's
rule: local weights are asked for explicitly). ``checkpoint=`` (a local file, folder or URL) replaces the table's
weights file; the model keeps the table's preprocessing, and its number of classes (and class names) are the
weights' own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch
from huggingface_hub import constants

import segzoo.checkpoints._download as hub
from segzoo._atomic import atomic_write
from segzoo._errors import CorruptedFileError, UnknownCheckpointError
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, EvalProtocol
from segzoo.checkpoints._convert import CONVERTERS, ConversionError, adapt_to_model, detect_format, unwrap_checkpoint
from segzoo.checkpoints._table import (
    PretrainedCfg,
    get_encoder_cfg,
    get_pretrained_cfg,
    list_pretrained,
)
from segzoo.models._encoder_decoder import EncoderDecoder
from segzoo.models._registry import ARCHS, MIT_SIZES, build_model, check_num_classes
from segzoo.models.encoders import TimmViTEncoder

log = logging.getLogger("segzoo")

# Numerics a checkpoint format was trained with, where they differ from the registry rows (mmsegmentation's): the
# official Segmenter code resamples position embeddings bilinearly, uses LayerNorm eps 1e-5 in its ViT, crops the
# logits of a padded input instead of resizing them, and trains with drop path on both residual branches of its
# blocks and (Mask decoder) dropout 0.1 without drop path (segm/model/blocks.py, segm/config.yml).
FORMAT_MODEL_ARGS = {
    "segmenter-official": {
        "encoder_args": {"pos_embed_interp": "bilinear", "norm_eps": 1e-5, "drop_path_branches": "both"},
        "unpad": "crop",
    },
}
FORMAT_DECODER_ARGS = {  # (format, registry decoder) -> decoder arguments
    ("segmenter-official", "mask_transformer"): {"dropout": 0.1, "drop_path_rate": 0.0, "drop_path_branches": "both"},
}

# transformers SegFormer config (hidden_sizes, depths) -> our architecture, derived from the registry's MiT sizes
MIT_BY_WIDTHS = {(size["embed_dims"], size["depths"]): f"segformer-{name}" for name, size in MIT_SIZES.items()}


def load(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    model_cls: type[EncoderDecoder] = EncoderDecoder,
    **model_args: Any,
) -> EncoderDecoder:
    """A pretrained model in eval mode, with ``model.pretrained_cfg`` holding its preprocessing and evaluation.

    Args:
        name: A checkpoint name (``segformer-b2-ade``), ``hf-hub:org/repo``, a local folder or file, or an
            architecture name when ``checkpoint`` is given.
        checkpoint: A local file or folder, or a URL, in any supported format (detected from its keys), used
            instead of the table's weights.
        num_classes: Keep everything but the class-specific layers, which are re-initialised for this many classes
            (fine-tuning on a new dataset).
        map_location: Device for the weights and the model.
        cache_dir: Hugging Face hub cache folder (default ``HF_HUB_CACHE``).
        model_cls: The class to build (``segzoo.load`` gives ``segzoo.SegmentationModel``).
        **model_args: Extra ``build_model`` overrides (``drop_path_rate``, ``aux_heads``, ...).
    """
    name = str(name)
    if num_classes is not None:
        check_num_classes(num_classes)  # before any download
    repo = hub.parse_hf_hub_id(name)
    if repo is not None:
        folder = hub.snapshot(*repo, cache_dir=cache_dir, allow_patterns=["*.json", "*.safetensors", "*.bin"])
        return _finish(_load_folder(folder, model_args, model_cls), num_classes, map_location)
    if checkpoint is None:
        path = local_path(name)
        if path is not None:
            loaded = (_load_folder(path, model_args, model_cls) if path.is_dir()
                      else _load_self_described_file(path, model_args, model_cls))
            return _finish(loaded, num_classes, map_location)
        _refuse_unloadable_name(name)

    cfg = None if name in ARCHS else get_pretrained_cfg(name)
    if cfg is not None and cfg.is_encoder:
        raise ValueError(
            f"{name!r} is an ImageNet encoder checkpoint, not a segmentation model: build a model with "
            f"segzoo.create_model(<architecture>, pretrained_encoder=True) (architectures: {', '.join(cfg.encoder_of)})"
        )
    arch = cfg.arch if cfg else name
    args = _table_model_args(cfg) | model_args
    if checkpoint is None:
        path = hub.download_file(cfg, cache_dir=cache_dir)
        state, fmt = _converted_cached(path, cfg.format, arch, cache_dir)
    else:
        path = _local_or_downloaded(checkpoint, cache_dir)
        if path.is_dir():
            return _finish(_load_folder(path, args, model_cls, expected_arch=arch, cfg=cfg), num_classes, map_location)
        state, fmt = _read_converted(path)
    args = _with_format_numerics(args, fmt, arch)
    args = _with_structure_of_weights(args, state)
    num_classes_saved = cfg.num_classes if cfg and checkpoint is None else _head_classes(state, arch)
    model = build_model(arch, num_classes=num_classes_saved, model_cls=model_cls, **args)
    _load_weights(model, state, fmt, source=str(path))
    if cfg is not None:
        model.pretrained_cfg = _table_cfg_for(cfg, num_classes_saved, source=path)
    return _finish(model, num_classes, map_location)


# --------------------------------------------------------------------------------------------------------------
# Sources


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PATH_SUFFIXES = (".safetensors", ".json", *hub.STATE_DICT_SUFFIXES)


LOCAL_PREFIX = "local-dir:"


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name or "\\" in name or name.startswith(("~", ".")) or Path(name).is_absolute()
        or Path(name).suffix.lower() in _PATH_SUFFIXES
    )


def local_path(name: str) -> Path | None:
    """The local file or folder ``name`` asks for: ``local-dir:PATH``, or a name written as a path (see the module
    docstring); ``None`` for a checkpoint, architecture or other bare name, which never means a local file.

    Raises:
        FileNotFoundError: The path does not exist.
    """
    if name.startswith(LOCAL_PREFIX):
        path = Path(name[len(LOCAL_PREFIX):]).expanduser()
    elif _looks_like_path(name) and not _URL_SCHEME.match(name):
        path = Path(name).expanduser()
    else:
        if Path(name).exists() and (name in ARCHS or _published(name)):
            log.warning(
                "%r is a published %s, which segzoo.load(%r) loads; the %s of that name in %s is not used: load it "
                "with segzoo.load('./%s') (or 'local-dir:%s')", name, "architecture" if name in ARCHS else "checkpoint",
                name, "folder" if Path(name).is_dir() else "file", Path.cwd(), name, name,
            )
        return None
    if not path.exists():
        raise FileNotFoundError(
            f"{name!r} does not exist (segzoo.load takes a checkpoint name, hf-hub:org/repo, or an existing file or "
            "folder): check the path"
        )
    return path


def _published(name: str) -> bool:
    return name in list_pretrained() or name in list_pretrained(kind="encoder")


def _refuse_unloadable_name(name: str) -> None:
    """Raise a clear error for a ``name`` that ``load`` cannot use without ``checkpoint=``: a URL, an architecture
    name (architectures have no weights of their own), or a bare name that is no checkpoint but names a local file
    or folder. Checkpoint names pass."""
    if _URL_SCHEME.match(name):
        raise ValueError(
            f"segzoo.load({name!r}): a URL needs the architecture it is for: "
            f"segzoo.load('<architecture or checkpoint name>', checkpoint={name!r})"
        )
    if name in ARCHS:
        ckpts = [n for n in list_pretrained() if get_pretrained_cfg(n).arch == name]
        known = f"; its published checkpoints: {', '.join(ckpts)}" if ckpts else ""
        raise ValueError(
            f"{name!r} is an architecture, which has no weights of its own: segzoo.create_model({name!r}, "
            f"num_classes=N) for a fresh model (pretrained_encoder=True for ImageNet encoder weights), or "
            f"segzoo.load({name!r}, checkpoint='path/or/url') for your weights{known}"
        )
    if not _published(name) and Path(name).exists():
        what = "folder" if Path(name).is_dir() else "file"
        raise UnknownCheckpointError(
            f"{name!r} is not a published checkpoint (segzoo list), but a {what} of that name exists in {Path.cwd()}: "
            f"a bare name always means a checkpoint, so write the path to load the {what}: segzoo.load('./{name}') "
            f"(or 'local-dir:{name}')"
        )


def _table_cfg_for(
    cfg: PretrainedCfg, num_classes: int, source: Path, class_names: list[str] | None = None
) -> dict[str, Any]:
    """The table row's ``pretrained_cfg`` for weights given with ``checkpoint=``: the row's preprocessing and
    evaluation; its classes (names, palette, dataset, scores) only when the weights have its number of classes,
    otherwise the weights' own class names if they carry any."""
    out = cfg.to_dict()
    if num_classes == cfg.num_classes:
        return out
    log.warning(
        "%s has %d classes, checkpoint %s %d: the model takes %s's preprocessing and evaluation, and %s", source,
        num_classes, cfg.name, cfg.num_classes, cfg.name,
        "the class names stored with the weights" if class_names else "no class names (a default palette)",
    )
    names = list(class_names) if class_names and len(class_names) == num_classes else None
    return out | {"num_classes": num_classes, "class_names": names, "palette": None, "dataset": None, "metrics": {}}


def _local_or_downloaded(checkpoint: str | Path, cache_dir) -> Path:
    """The local file or folder of ``checkpoint=``: a path, an ``http(s)://`` URL (downloaded into the cache),
    ``file://`` URL, or ``hf-hub:org/repo[@revision]`` (a snapshot folder)."""
    text = str(checkpoint)
    repo = hub.parse_hf_hub_id(text)
    if repo is not None:
        return hub.snapshot(*repo, cache_dir=cache_dir, allow_patterns=["*.json", "*.safetensors", "*.bin"])
    scheme = _URL_SCHEME.match(text) if isinstance(checkpoint, str) else None
    if scheme and scheme.group(1).lower() in ("http", "https"):
        return hub.download_file(text, cache_dir=cache_dir)
    if scheme and scheme.group(1).lower() == "file":
        path = Path(url2pathname(urlparse(text).path))
    elif scheme:
        raise hub.UnknownFormatError(
            f"checkpoint={text!r}: segzoo downloads only http:// and https:// URLs (and hf-hub:org/repo), not "
            f"{scheme.group(1)}:// URLs: download the file yourself and pass its local path"
        )
    else:
        path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist: check the path")
    return path


def _with_format_numerics(args: dict[str, Any], fmt: str, arch: str) -> dict[str, Any]:
    """``args`` completed with the numerics checkpoints of format ``fmt`` were trained with; explicit args win."""
    fmt_args = dict(FORMAT_MODEL_ARGS.get(fmt, {}))
    decoder_args = FORMAT_DECODER_ARGS.get((fmt, ARCHS[arch].decoder))
    if decoder_args:
        fmt_args["decoder_args"] = decoder_args
    out = {k: v for k, v in fmt_args.items() if k not in ("encoder_args", "decoder_args")} | dict(args)
    for part in ("encoder_args", "decoder_args"):
        if part in fmt_args:
            out[part] = fmt_args[part] | dict(args.get(part) or {})
    return out


def _with_structure_of_weights(args: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``args`` completed with what the weights say about the network's structure: a ViT patch projection without
    bias (mmseg >= 1.1 writes its ViTs with ``patch_bias=False``) is built without one, so that no parameter trains
    that the publisher's model does not have; the fact travels in the model's ``build_args`` (saved configs and
    training checkpoints). Explicit args win."""
    if "backbone.patch_embed.proj.weight" in state and "backbone.patch_embed.proj.bias" not in state:
        return args | {"encoder_args": {"patch_bias": False} | dict(args.get("encoder_args") or {})}
    return args


def _table_model_args(cfg: PretrainedCfg | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    args = dict(cfg.model_args)
    if "img_size" in ARCHS[cfg.arch].encoder_args:  # ViT position embeddings are stored for the training crop
        args.setdefault("img_size", cfg.crop_size[0])
    return args


def _read_converted(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read any supported file and convert it to segzoo names; returns the state dict and the source format."""
    state = unwrap_checkpoint(hub.read_state_dict(path))
    try:
        fmt = detect_format(state)
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from None
    return CONVERTERS[fmt](state), fmt


# Cache folders the converted copy could not be written to, warned about once per process.
_UNWRITABLE_CACHES: set[Path] = set()


def _content_key(path: Path) -> str:
    """An identifier of the file's content that survives moving the cache: the Hugging Face cache names each blob
    by its ETag (the sha256 of an LFS file, the git sha1 of a regular one); any other file is hashed."""
    resolved = path.resolve()
    if resolved.parent.name == "blobs" and len(resolved.name) in (40, 64):
        return resolved.name
    return hub.file_sha256(resolved)


# Part of the converted cache's key: raise it whenever a converter's output changes, so that files converted by an
# older segzoo are converted again (2: mmseg >= 1.1 ViT files keep their missing patch bias missing).
CONVERTED_CACHE_VERSION = 2


def _converted_cached(path: Path, fmt: str, arch: str, cache_dir) -> tuple[dict[str, torch.Tensor], str]:
    """Convert a downloaded foreign checkpoint once and keep the result as safetensors beside the HF cache; returns
    the converted state dict and the source format.

    The cached copy is keyed on the file's content (not its path), written under a unique temporary name and
    renamed atomically, so concurrent loads never see or clash on a partial file. A cache that cannot be written
    (read-only) is warned about once; the checkpoint is then converted in memory on each load."""
    if fmt == "segzoo":
        return unwrap_checkpoint(hub.read_state_dict(path)), fmt
    key = hashlib.sha256(f"{_content_key(path)}:{fmt}:{CONVERTED_CACHE_VERSION}".encode()).hexdigest()[:16]
    cached = Path(cache_dir or constants.HF_HUB_CACHE) / "segzoo-converted" / f"{arch}-{key}.safetensors"
    if cached.exists():
        try:
            return hub.read_state_dict(cached), fmt
        except hub.CorruptedFileError as err:
            log.warning("%s; converting %s again", err, path.name)
    state = CONVERTERS[fmt](unwrap_checkpoint(hub.read_state_dict(path)))
    if _write_atomically(state, cached):
        log.info("converted %s (%s) and cached it as %s", path.name, fmt, cached)
    return state, fmt


def _write_atomically(state: dict[str, torch.Tensor], target: Path) -> bool:
    """Write ``state`` as safetensors to ``target`` through a unique temporary file in the same folder and an
    atomic rename; ``False`` (with a warning, once per folder) if the folder cannot be written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        with atomic_write(target) as tmp:  # a concurrent or interrupted load never sees half a file
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        return True
    except (OSError, SafetensorError) as err:
        if target.parent not in _UNWRITABLE_CACHES:
            _UNWRITABLE_CACHES.add(target.parent)
            log.warning(
                "cannot keep the converted checkpoint in %s (%s); using it converted in memory, so every load "
                "converts again: point HF_HUB_CACHE (or cache_dir=) at a writable folder to keep it",
                target.parent, getattr(err, "strerror", None) or err,
            )
        return False


def _load_folder(
    folder: Path, model_args: dict, model_cls: type[EncoderDecoder], expected_arch: str | None = None,
    cfg: PretrainedCfg | None = None, weights: Path | None = None,
) -> EncoderDecoder:
    """A segzoo folder (``config.json`` with ``architecture``) or a transformers SegFormer folder; ``weights`` is the
    file to read (default: the folder's ``model.safetensors``, ``pytorch_model.bin`` or ``model.pth``)."""
    config_path = folder / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{folder} has no config.json: expected a segzoo folder (config.json + model.safetensors) or a "
            "transformers SegFormer folder"
        )
    config = _read_config(config_path)
    weights = weights or _first_existing(folder, ("model.safetensors", "pytorch_model.bin", "model.pth"))
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
    model = build_model(arch, num_classes=num_classes, model_cls=model_cls, **args)
    state, fmt = _read_converted(weights)
    _load_weights(model, state, fmt, source=str(weights))
    names = [labels[str(i)] for i in range(len(labels))] if labels else None
    if pretrained_cfg:
        model.pretrained_cfg = pretrained_cfg
    elif cfg is not None:
        model.pretrained_cfg = _table_cfg_for(cfg, num_classes, folder, names)
    else:
        model.pretrained_cfg = {}
    if names and not model.pretrained_cfg.get("class_names"):
        model.pretrained_cfg["class_names"] = names
    return model


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


def _read_config(path: Path) -> dict[str, Any]:
    """A folder's ``config.json`` as a dict; a file that is not a JSON object is named."""
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptedFileError(f"{path} is not valid JSON ({err}): repair it, or write the folder again with "
                                 "model.save_pretrained(folder)") from None
    if not isinstance(config, dict):
        raise CorruptedFileError(f"{path} holds a JSON {type(config).__name__}, not an object: expected a segzoo or "
                                 "transformers config.json")
    return config


def _load_self_described_file(path: Path, model_args: dict, model_cls: type[EncoderDecoder]) -> EncoderDecoder:
    """A file beside its ``config.json``, or a bare weights file whose architecture its keys and shapes tell
    (``segzoo.checkpoints._arch_from_weights``), loaded as ``load(<architecture>, checkpoint=path)`` loads it."""
    if path.suffix == ".safetensors" and (path.parent / "config.json").exists():  # described by its folder's config
        return _load_folder(path.parent, model_args, model_cls, weights=path)
    from segzoo.checkpoints._arch_from_weights import infer_architecture

    header = _read_without_weights(path)
    state = unwrap_checkpoint(header)
    if isinstance(header.get("hyper_parameters"), dict) and all(k.startswith("model.") for k in state):
        return _load_training_checkpoint(path, model_args, model_cls)
    try:
        fmt = detect_format(state)
    except ConversionError as err:
        raise ConversionError(f"{path} does not say which architecture it is for, and {err}") from None
    match = infer_architecture(CONVERTERS[fmt](state), meta=header.get("meta"), source=str(path), fmt=fmt)
    args = ({"img_size": match.img_size} if match.img_size else {}) | model_args
    model = load(match.arch, checkpoint=path, model_cls=model_cls, **args)
    model.pretrained_cfg = _bare_file_cfg(fmt, match, model.pretrained_cfg)
    log.info("%s: inferred architecture %s", path.name, match.describe())
    return model


# Formats whose files are their publishers' own releases: they carry no test pipeline segzoo reads (official SETR
# files hold an mmseg 0.x config and class names, the latter in another order than their labels), so the table's rows
# of that publisher give it.
PUBLISHER_FORMATS = ("segmenter-official", "setr-official")
# pretrained_cfg keys that describe one published file rather than the protocol its kind of file shares
_FILE_KEYS = ("name", "metrics", "source", "sha256", "notes")


def _bare_file_cfg(fmt: str, match, loaded: dict[str, Any]) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a bare file: its publisher's protocol from the table where the format has one, else
    what loading gave, completed with class names from the file's mmseg ``meta``."""
    cfg = _published_protocol(fmt, match.arch, match.num_classes, match.img_size) if fmt in PUBLISHER_FORMATS else {}
    cfg = cfg or dict(loaded)
    if match.class_names and not cfg.get("class_names"):
        cfg["class_names"] = list(match.class_names)
    return cfg


def _published_protocol(fmt: str, arch: str, num_classes: int, img_size: int | None) -> dict[str, Any]:
    """The preprocessing and evaluation protocol of the table rows a bare file is one of: same format, architecture,
    classes and crop (official Segmenter and SETR files carry no config). Rows that differ only in training (40k or
    80k iterations) share it; rows that disagree give nothing. Empty when no row fits."""
    rows = [
        cfg for name in list_pretrained() if (cfg := get_pretrained_cfg(name)).format == fmt and cfg.arch == arch
        and cfg.num_classes == num_classes and (img_size is None or cfg.crop_size[0] == img_size)
    ]
    protocols = [{k: v for k, v in cfg.to_dict().items() if k not in _FILE_KEYS} for cfg in rows]
    if not protocols or any(p != protocols[0] for p in protocols):
        return {}
    if len(rows) == 1:
        return rows[0].to_dict()
    return protocols[0] | {"notes": f"one of {', '.join(cfg.name for cfg in rows)} (same protocol)"}


# Training switches in a run's model_args that say how it was trained, not what the network is.
_TRAINING_ONLY_ARGS = ("pretrained_encoder", "freeze_encoder", "grad_checkpointing")


def _load_training_checkpoint(path: Path, model_args: dict, model_cls: type[EncoderDecoder]) -> EncoderDecoder:
    """A ``.ckpt`` that ``train.py`` / ``segzoo train`` wrote: the architecture, its arguments and the classes from the
    module's hyperparameters, the test pipeline from the DataModule's (mean/std, test scale) and the module's
    evaluation settings, the weights from ``model.*``."""
    checkpoint = hub.read_state_dict(path)
    hparams = checkpoint["hyper_parameters"]
    arch = hparams.get("model")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ConversionError(
            f"{path} is a Lightning checkpoint of a model given as a module, not a registry architecture ({arch!r}): "
            f"load it with segzoo.training.SegmentationModule.load_from_checkpoint({str(path)!r}).model"
        )
    state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    build_args = {k: v for k, v in (hparams.get("model_args") or {}).items() if k not in _TRAINING_ONLY_ARGS}
    num_classes = hparams.get("num_classes") or _head_classes(state, arch)
    build_args = _with_structure_of_weights(build_args | model_args, state)
    model = build_model(arch, num_classes=num_classes, model_cls=model_cls, **build_args)
    _load_weights(model, state, "segzoo", source=str(path))
    model.pretrained_cfg = _trained_cfg(checkpoint, num_classes)
    return model


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


def _read_without_weights(path: Path) -> dict[str, Any]:
    """The file's top-level object with every tensor replaced by a meta tensor of its shape: enough to infer the
    architecture without reading the weights (a safetensors header; a memory-mapped torch zip file). Anything else
    is read by ``hub.read_state_dict``, which also names what is wrong with a file it cannot read."""

    def to_meta(obj):
        if isinstance(obj, torch.Tensor):
            return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
        return {k: to_meta(v) for k, v in obj.items()} if isinstance(obj, dict) else obj

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                names = f.keys()
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in names}
        if path.suffix in hub.STATE_DICT_SUFFIXES:
            return to_meta(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    except Exception as err:  # noqa: BLE001 - not memory-mappable (a legacy torch file) or unreadable: read it fully
        log.debug("%s: no shapes-only read (%s); reading the whole file", path, err)
    return to_meta(hub.read_state_dict(path))


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder} holds none of {', '.join(names)}")


# --------------------------------------------------------------------------------------------------------------
# Weights


def _head_classes(state: dict[str, torch.Tensor], arch: str) -> int:
    """The number of classes of a converted checkpoint's head."""
    for key in ("decode_head.conv_seg.bias", "decode_head.linear_pred.bias", "decode_head.mask_norm.weight"):
        if key in state:
            return state[key].shape[0]
    raise ConversionError(f"cannot tell the number of classes of this {arch} checkpoint: it has no decode head")


def _load_weights(model: EncoderDecoder, state: dict[str, torch.Tensor], fmt: str, source: str) -> None:
    """Strictly load converted weights; auxiliary heads absent from (or shaped unlike) the checkpoint are dropped,
    since they only serve training."""
    state = adapt_to_model(state, model, pos_embed_interp=_pos_interp(model))
    own = model.state_dict()
    aux_in_ckpt = {k for k in state if k.startswith("auxiliary_head.")}
    aux_fits = aux_in_ckpt and all(k in own and own[k].shape == state[k].shape for k in aux_in_ckpt) and all(
        k in aux_in_ckpt for k in own if k.startswith("auxiliary_head.")
    )
    if len(model.auxiliary_head) and not aux_fits:
        log.info("%s: no matching auxiliary-head weights; the auxiliary heads are dropped (inference never uses them)",
                 source)
        model.drop_auxiliary_heads()
    if not aux_fits:
        state = {k: v for k, v in state.items() if k not in aux_in_ckpt}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConversionError(f"{source} ({fmt} format) does not fit {model.arch_name}: {err}") from None


def _pos_interp(model: EncoderDecoder) -> str:
    return getattr(model.backbone, "pos_embed_interp", "bicubic")


def _finish(model: EncoderDecoder, num_classes: int | None, map_location) -> EncoderDecoder:
    if num_classes is not None and num_classes != model.num_classes:
        model = replace_classes(model, num_classes)
    return model.to(map_location).eval()


def replace_classes(model: EncoderDecoder, num_classes: int) -> EncoderDecoder:
    """A copy of ``model`` for ``num_classes`` classes: every weight kept but the class-specific ones, which are
    freshly initialised."""
    old = model.num_classes
    fresh = build_model(model.arch_name, num_classes=num_classes, aux_heads=len(model.auxiliary_head) > 0,
                        model_cls=type(model), **model.build_args)
    class_specific = set(fresh.class_specific_parameters())
    kept = {k: v for k, v in model.state_dict().items() if k not in class_specific}
    fresh.load_state_dict(kept, strict=False)  # the missing keys are exactly the class-specific ones
    fresh.pretrained_cfg = dict(model.pretrained_cfg, num_classes=num_classes, class_names=None, palette=None)
    log.warning("%s: re-initialised the %d-class layers (%s) for %d classes; all other weights kept",
                model.arch_name, old, ", ".join(sorted({k.rsplit(".", 1)[0] for k in class_specific})), num_classes)
    return fresh


def load_encoder_weights(model: EncoderDecoder, name: str | None = None, cache_dir=None) -> EncoderDecoder:
    """Initialise ``model``'s encoder from an ImageNet checkpoint (``name``, or the one ``checkpoints.yaml`` lists
    first for its architecture), resampling position embeddings to the model's crop. A timm encoder takes timm's
    own pretrained weights for its model name."""
    if isinstance(model.backbone, TimmViTEncoder):  # weights, and their adaptation, are timm's
        if name is not None and name != model.backbone.model_name:
            raise UnknownCheckpointError(
                f"{model.arch_name} on timm's {model.backbone.model_name!r} takes that model's own weights "
                f"(pretrained_encoder=True); to use {name!r}, build it with encoder={name!r}"
            )
        model.backbone.load_pretrained()
        log.info("%s: encoder initialised from timm's %s", model.arch_name, model.backbone.model_name)
        return model
    cfg = get_encoder_cfg(model.arch_name, name)
    path = hub.download_file(cfg, cache_dir=cache_dir)
    state, _ = _converted_cached(path, cfg.format, f"{model.arch_name}-encoder", cache_dir)
    state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    if "backbone.norm.weight" not in model.state_dict():  # SETR's ViT has no final norm
        state = {k: v for k, v in state.items() if not k.startswith("backbone.norm.")}
    state = adapt_to_model(state, model, pos_embed_interp=_pos_interp(model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    encoder_missing = [k for k in missing if k.startswith("backbone.")]
    if encoder_missing or unexpected:
        raise ConversionError(
            f"{cfg.name} does not fit the encoder of {model.arch_name}: missing {encoder_missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    log.info("%s: encoder initialised from %s", model.arch_name, cfg.name)
    return model


__all__ = ["load", "load_encoder_weights", "replace_classes"]
