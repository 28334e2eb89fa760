"""Which file, folder or Hub repository a name given to ``segzoo.load`` means; a name means one thing, whatever lies
in the working folder (see :func:`segzoo.checkpoints.resolve`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from segzoo._errors import UnknownCheckpointError, UnknownFormatError
from segzoo.checkpoints._download import STATE_DICT_SUFFIXES, download_file, parse_hf_hub_id, snapshot
from segzoo.checkpoints._table import list_pretrained
from segzoo.models._registry import ARCHS

log = logging.getLogger("segzoo")

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PATH_SUFFIXES = (".safetensors", ".json", *STATE_DICT_SUFFIXES)


LOCAL_PREFIX = "local-dir:"


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name
        or "\\" in name
        or name.startswith(("~", "."))
        or Path(name).is_absolute()
        or Path(name).suffix.lower() in _PATH_SUFFIXES
    )


def local_path(name: str) -> Path | None:
    """The local file or folder ``name`` asks for: ``local-dir:PATH``, or a name written as a path (see the module
    docstring); ``None`` for a checkpoint, architecture or other bare name, which never means a local file.

    Raises:
        FileNotFoundError: The path does not exist.
    """
    if name.startswith(LOCAL_PREFIX):
        path = Path(name[len(LOCAL_PREFIX) :]).expanduser()
    elif _looks_like_path(name) and not _URL_SCHEME.match(name):
        path = Path(name).expanduser()
    else:
        if Path(name).exists() and (name in ARCHS or is_published(name)):
            log.warning(
                "%r is a published %s, which segzoo.load(%r) loads; the %s of that name in %s is not used: load it "
                "with segzoo.load('./%s') (or 'local-dir:%s')",
                name,
                "architecture" if name in ARCHS else "checkpoint",
                name,
                "folder" if Path(name).is_dir() else "file",
                Path.cwd(),
                name,
                name,
            )
        return None
    if not path.exists():
        raise FileNotFoundError(
            f"{name!r} does not exist (segzoo.load takes a checkpoint name, hf-hub:org/repo, or an existing file or "
            "folder): check the path"
        )
    return path


def is_published(name: str) -> bool:
    return name in list_pretrained() or name in list_pretrained(kind="encoder")


def refuse_unloadable_name(name: str) -> None:
    """Raise a clear error for a ``name`` that ``load`` cannot use without ``checkpoint=``: a URL, an architecture
    name (architectures have no weights of their own), or a bare name that is no checkpoint but names a local file
    or folder. Checkpoint names pass."""
    if _URL_SCHEME.match(name):
        raise ValueError(
            f"segzoo.load({name!r}): a URL needs the architecture it is for: "
            f"segzoo.load('<architecture or checkpoint name>', checkpoint={name!r})"
        )
    if name in ARCHS:
        ckpts = list_pretrained(arch=name)
        known = (
            (
                f"; its published checkpoints: {', '.join(ckpts)} (segzoo.create_model({name!r}, pretrained=True) "
                f"loads {ckpts[0]})"
            )
            if ckpts
            else ""
        )
        raise ValueError(
            f"{name!r} is an architecture, which has no weights of its own: segzoo.create_model({name!r}, "
            f"num_classes=N) for a fresh model (pretrained_encoder=True for ImageNet encoder weights), or "
            f"segzoo.load({name!r}, checkpoint='path/or/url') for your weights{known}"
        )
    if not is_published(name) and Path(name).exists():
        what = "folder" if Path(name).is_dir() else "file"
        raise UnknownCheckpointError(
            f"{name!r} is not a published checkpoint (segzoo list), but a {what} of that name exists in {Path.cwd()}: "
            f"a bare name always means a checkpoint, so write the path to load the {what}: segzoo.load('./{name}') "
            f"(or 'local-dir:{name}')"
        )


def local_or_downloaded(checkpoint: str | Path, cache_dir) -> Path:
    """The local file or folder of ``checkpoint=``: a path, an ``http(s)://`` URL (downloaded into the cache),
    ``file://`` URL, or ``hf-hub:org/repo[@revision]`` (a snapshot folder)."""
    text = str(checkpoint)
    repo = parse_hf_hub_id(text)
    if repo is not None:
        return snapshot(*repo, cache_dir=cache_dir, allow_patterns=["*.json", "*.safetensors", "*.bin"])
    scheme = _URL_SCHEME.match(text) if isinstance(checkpoint, str) else None
    if scheme and scheme.group(1).lower() in ("http", "https"):
        return download_file(text, cache_dir=cache_dir)
    if scheme and scheme.group(1).lower() == "file":
        path = Path(url2pathname(urlparse(text).path))
    elif scheme:
        raise UnknownFormatError(
            f"checkpoint={text!r}: segzoo downloads only http:// and https:// URLs (and hf-hub:org/repo), not "
            f"{scheme.group(1)}:// URLs: download the file yourself and pass its local path"
        )
    else:
        path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist: check the path")
    return path
