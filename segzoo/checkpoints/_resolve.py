"""What a name given to ``segzoo.load`` means, read into a :class:`~segzoo.checkpoints._checkpoint.Checkpoint`.

Resolution of ``resolve(name, checkpoint=None)``; a name means one thing, whatever lies in the working folder:
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

from pathlib import Path
from typing import Any

import segzoo.checkpoints._download as hub
from segzoo.checkpoints._bare import read_file
from segzoo.checkpoints._cache import converted_cached, read_converted
from segzoo.checkpoints._checkpoint import Checkpoint, head_classes, network_args, table_cfg_for
from segzoo.checkpoints._folder import read_folder
from segzoo.checkpoints._sources import local_or_downloaded, local_path, refuse_unloadable_name
from segzoo.checkpoints._table import PretrainedCfg, get_pretrained_cfg
from segzoo.models._registry import ARCHS

HUB_FILES = ["*.json", "*.safetensors", "*.bin"]  # what a Hub repository's snapshot downloads


def resolve(
    name: str, *, checkpoint: str | Path | None = None, cache_dir: str | Path | None = None, **model_args: Any
) -> Checkpoint:
    """The checkpoint ``name`` (and ``checkpoint=``) mean, read: see the module docstring. ``model_args`` are
    ``from_arch`` overrides, which win over the checkpoint's own."""
    name = str(name)
    repo = hub.parse_hf_hub_id(name)
    if repo is not None:
        return read_folder(hub.snapshot(*repo, cache_dir=cache_dir, allow_patterns=HUB_FILES), model_args)
    if checkpoint is None:
        path = local_path(name)
        if path is not None:
            return read_folder(path, model_args) if path.is_dir() else read_file(path, model_args)
        refuse_unloadable_name(name)

    cfg = None if name in ARCHS else get_pretrained_cfg(name)
    if cfg is not None and cfg.is_encoder:
        raise ValueError(
            f"{name!r} is an ImageNet encoder checkpoint, not a segmentation model: build a model with "
            f"segzoo.create_model(<architecture>, pretrained_encoder={name!r}) (architectures: "
            f"{', '.join(cfg.encoder_of)})"
        )
    arch = cfg.arch if cfg else name
    args = table_model_args(cfg) | model_args
    if checkpoint is None:
        path = hub.download_file(cfg, cache_dir=cache_dir)
        state, fmt = converted_cached(path, cfg.format, arch, cache_dir)
    else:
        path = local_or_downloaded(checkpoint, cache_dir)
        if path.is_dir():
            return read_folder(path, args, expected_arch=arch, cfg=cfg)
        state, fmt = read_converted(path)
    num_classes = cfg.num_classes if cfg and checkpoint is None else head_classes(state, arch)
    pretrained_cfg = table_cfg_for(cfg, num_classes, source=path) if cfg else {}
    return Checkpoint(arch, num_classes, network_args(args, fmt, arch, state), state, fmt, str(path), pretrained_cfg)


def table_model_args(cfg: PretrainedCfg | None) -> dict[str, Any]:
    """The ``from_arch`` arguments of a table row: its ``model_args``, and ViT position embeddings stored for its
    training crop."""
    if cfg is None:
        return {}
    args = dict(cfg.model_args)
    if "img_size" in ARCHS[cfg.arch].encoder_args:
        args.setdefault("img_size", cfg.crop_size[0])
    return args
