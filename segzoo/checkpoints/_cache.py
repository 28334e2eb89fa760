"""The converted-checkpoint cache: a foreign checkpoint (mmseg, official, transformers...) is converted to segzoo's
names once and kept as safetensors under ``<HF_HUB_CACHE>/segzoo-converted/``, keyed on the file's content."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from huggingface_hub import constants

from segzoo._atomic import atomic_write
from segzoo._errors import ConversionError, CorruptedFileError
from segzoo.checkpoints._convert import CONVERTERS, detect_format, unwrap_checkpoint
from segzoo.checkpoints._download import file_sha256, read_state_dict

log = logging.getLogger("segzoo")


def read_converted(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read any supported file and convert it to segzoo names; returns the state dict and the source format."""
    state = unwrap_checkpoint(read_state_dict(path))
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
    return file_sha256(resolved)


# Part of the converted cache's key: raise it whenever a converter's output changes, so that files converted by an
# older segzoo are converted again (2: mmseg >= 1.1 ViT files keep their missing patch bias missing).
CONVERTED_CACHE_VERSION = 2


def converted_cached(path: Path, fmt: str, arch: str, cache_dir) -> tuple[dict[str, torch.Tensor], str]:
    """Convert a downloaded foreign checkpoint once and keep the result as safetensors beside the HF cache; returns
    the converted state dict and the source format.

    The cached copy is keyed on the file's content (not its path), written under a unique temporary name and
    renamed atomically, so concurrent loads never see or clash on a partial file. A cache that cannot be written
    (read-only) is warned about once; the checkpoint is then converted in memory on each load."""
    if fmt == "segzoo":
        return unwrap_checkpoint(read_state_dict(path)), fmt
    key = hashlib.sha256(f"{_content_key(path)}:{fmt}:{CONVERTED_CACHE_VERSION}".encode()).hexdigest()[:16]
    cached = Path(cache_dir or constants.HF_HUB_CACHE) / "segzoo-converted" / f"{arch}-{key}.safetensors"
    if cached.exists():
        try:
            return read_state_dict(cached), fmt
        except CorruptedFileError as err:
            log.warning("%s; converting %s again", err, path.name)
    state = CONVERTERS[fmt](unwrap_checkpoint(read_state_dict(path)))
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
                target.parent,
                getattr(err, "strerror", None) or err,
            )
        return False
