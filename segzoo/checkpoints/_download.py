"""Downloading checkpoints: from the Hugging Face Hub or the publishers' URLs, cached and verified.

- :func:`download_file` fetches the file of a ``checkpoints.yaml`` row. Hub files go through
  ``huggingface_hub.hf_hub_download`` (its cache, progress bars, resume, ``HF_HUB_OFFLINE=1``); plain URLs are
  written atomically (:mod:`segzoo._atomic`) into ``<HF_HUB_CACHE>/segzoo-url/<sha256 of the URL>/<file name>``, so a
  broken download never looks complete. A ``sha256`` from the table is verified on every use.
- :func:`snapshot` fetches a whole Hub repository (``hf-hub:org/repo``).
- :func:`read_state_dict` opens a checkpoint file safely: safetensors, or ``torch.load(weights_only=True)``.

Failures a user can act on raise :class:`DownloadError` (which URL failed, and how to pass ``checkpoint=`` a local
file instead), :class:`CorruptedFileError` (which file, delete it and retry) or :class:`UnknownFormatError`.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm

from segzoo._atomic import atomic_write
from segzoo._errors import (
    CheckpointReadError,
    CorruptedFileError,
    DownloadError,
    UnknownFormatError,
    UnsafeCheckpointError,
)
from segzoo._version import __version__
from segzoo.checkpoints._table import PretrainedCfg, Source

HF_HUB_PREFIX = "hf-hub:"
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
URL_CACHE_FOLDER = "segzoo-url"
_CHUNK = 1 << 20


def _local_file_hint() -> str:
    return (
        "Download the file by other means and pass it as a local file: segzoo.load(name, checkpoint='path/to/file') "
        "(HF_HUB_OFFLINE=1 uses files already in the cache)."
    )


# ----------------------------------------------------------------------------------------------------------------
# Download


def parse_hf_hub_id(name: str) -> tuple[str, str | None] | None:
    """Splits ``"hf-hub:org/repo[@revision]"`` into ``(repo_id, revision)``; ``None`` for anything else.

    Args:
        name: A model name as given to ``segzoo.load``.

    Returns:
        ``(repo_id, revision)`` (revision ``None`` when not given), or ``None`` if ``name`` has no ``hf-hub:`` prefix.

    Raises:
        ValueError: The prefix is there but the id is not ``org/repo``.
    """
    if not name.startswith(HF_HUB_PREFIX):
        return None
    repo_id, _, revision = name[len(HF_HUB_PREFIX) :].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{name!r} is not a Hub model id: expected 'hf-hub:org/repo' or 'hf-hub:org/repo@revision'")
    return repo_id, revision or None


def download_file(
    source: PretrainedCfg | Source | str,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    force_download: bool = False,
) -> Path:
    """Downloads a checkpoint file (or finds it in the cache) and checks it.

    Args:
        source: A table row (its ``source`` and ``sha256`` are used), a :class:`~segzoo.checkpoints._table.Source`, or a
            plain ``http(s)://`` URL.
        cache_dir: Hugging Face hub cache folder; default ``HF_HUB_CACHE`` (``~/.cache/huggingface/hub``).
        sha256: Expected sha256 (full, or its leading hex digits); overrides the row's.
        force_download: Download again even if the file is cached.

    Returns:
        Path of the local file.

    Raises:
        DownloadError: Network failure, offline mode without a cached copy, or a missing repository/revision/file.
        CorruptedFileError: The file does not match its sha256.
        UnknownFormatError: ``source`` is neither a row, a Source nor a URL.
    """
    if isinstance(source, PretrainedCfg):
        sha256 = sha256 or source.sha256
        source = source.source
    elif isinstance(source, str):
        if not source.startswith(("http://", "https://")):
            raise UnknownFormatError(
                f"Cannot download {source!r}: expected an http(s):// URL, a checkpoints.yaml row or a Source. "
                "For a local file pass checkpoint='path/to/file'."
            )
        source = Source(url=source)
    if not isinstance(source, Source):
        raise UnknownFormatError(
            f"Cannot download {source!r}: expected a checkpoints.yaml row (PretrainedCfg), a Source or an http(s):// "
            "URL"
        )
    if source.manual:
        raise DownloadError(
            f"This checkpoint is published as a web page ({source.url}) that only a browser can download from: "
            "open it, download the file, then pass it as a local file: segzoo.load(name, "
            "checkpoint='path/to/file')."
        )
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    if source.is_hf_hub:
        path = _download_hf(source, cache_dir, force_download)
    else:
        path = _download_url(str(source.url), cache_dir, sha256, force_download)
    if sha256:
        verify_sha256(path, sha256, origin=source.describe())
    return path


@contextmanager
def _hub_errors(where: str, hint: str, repo_id: str, revision: str | None = None, filename: str | None = None):
    """Turn huggingface_hub's exceptions into a :class:`DownloadError` that names what failed and what to do."""
    try:
        yield
    except LocalEntryNotFoundError as err:
        state = "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise DownloadError(f"Could not download {where}: {state} and it is not in the cache. {hint}") from err
    except RepositoryNotFoundError as err:
        raise DownloadError(
            f"Could not download {where}: the repository {repo_id!r} does not exist (or is private/gated: log in "
            f"with `hf auth login`). {hint}"
        ) from err
    except RevisionNotFoundError as err:
        raise DownloadError(f"Could not download {where}: {repo_id!r} has no revision {revision!r}. {hint}") from err
    except EntryNotFoundError as err:
        raise DownloadError(
            f"Could not download {where}: {repo_id!r} has no file {filename!r} at revision {revision!r}. {hint}"
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise DownloadError(f"Could not download {where}: {err}. {hint}") from err


def _download_hf(source: Source, cache_dir: Path, force_download: bool) -> Path:
    url = hf_hub_url(source.hf_hub_id, source.filename, revision=source.revision)
    with _hub_errors(url, _local_file_hint(), source.hf_hub_id, source.revision, source.filename):
        path = hf_hub_download(
            source.hf_hub_id,
            source.filename,
            revision=source.revision,
            cache_dir=cache_dir,
            force_download=force_download,
            library_name="segzoo",
            library_version=__version__,
        )
    return Path(path)


def url_cache_path(url: str, cache_dir: str | Path | None = None) -> Path:
    """Where a plain URL download is cached: ``<cache_dir>/segzoo-url/<sha256(url)[:16]>/<file name>``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    filename = Path(urlparse(url).path).name or "download"
    return cache_dir / URL_CACHE_FOLDER / hashlib.sha256(url.encode()).hexdigest()[:16] / filename


def _download_url(url: str, cache_dir: Path, sha256: str | None, force_download: bool) -> Path:
    target = url_cache_path(url, cache_dir)
    if target.exists() and not force_download:
        return target
    if constants.HF_HUB_OFFLINE:
        raise DownloadError(
            f"Could not download {url}: offline mode is on (HF_HUB_OFFLINE=1) and the file is not in "
            f"the cache ({target}). {_local_file_hint()}"
        )
    with atomic_write(target) as tmp:  # checked before it is moved in: a bad download never sits at the final path
        with open(tmp, "wb") as out:
            _stream(url, out, target.name)
        if sha256:
            verify_sha256(tmp, sha256, origin=url, downloaded=True)
    return target


def _stream(url: str, out, display_name: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"segzoo/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=display_name) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"Could not download {url}: the server answered HTTP {err.code} ({err.reason}). {_local_file_hint()}"
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"Could not download {url}: connection failed ({reason}). {_local_file_hint()}") from err
    if total is not None and received != total:
        raise DownloadError(
            f"Could not download {url}: the connection closed after {received} of {total} bytes "
            f"(nothing was saved; retry). {_local_file_hint()}"
        )


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str, *, origin: str = "", downloaded: bool = False) -> None:
    """Checks a file against a sha256 (full digest, or its leading hex digits as published in file names).

    Args:
        path: The file.
        expected: Expected digest or digest prefix (at least 8 hex digits).
        origin: Where the file came from, for the message.
        downloaded: The file is a fresh download (not yet in the cache).

    Raises:
        CorruptedFileError: The digest differs.
    """
    actual = file_sha256(path)
    if actual.startswith(expected.lower()):
        return
    where = f" (from {origin})" if origin else ""
    if downloaded:
        raise CorruptedFileError(
            f"The file downloaded{where} has sha256 {actual}, expected {expected}: the download is corrupted or the "
            "file changed upstream; nothing was cached. Retry; if it persists, pass checkpoint='path/to/file'."
        )
    raise CorruptedFileError(
        f"The cached file {Path(path).resolve()}{where} has sha256 {actual}, expected {expected}: it is truncated or "
        "corrupted. Delete it and retry (or call download with force_download=True)."
    )


def snapshot(
    repo_id: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """Downloads a whole Hub repository (``hf-hub:org/repo``) into the cache.

    Args:
        repo_id: ``org/repo``.
        revision: Branch, tag or commit; default ``main``.
        cache_dir: Hugging Face hub cache folder; default ``HF_HUB_CACHE``.
        allow_patterns: Only files matching these glob patterns.

    Returns:
        The local snapshot folder.

    Raises:
        DownloadError: Network failure, offline mode without a cached copy, or a missing repository/revision.
    """
    where = f"{constants.ENDPOINT}/{repo_id}" + (f" (revision {revision})" if revision else "")
    with _hub_errors(where, "Pass a local folder instead: segzoo.load('/path/to/folder').", repo_id, revision):
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=allow_patterns,
            library_name="segzoo",
            library_version=__version__,
        )
    return Path(folder)


# ----------------------------------------------------------------------------------------------------------------
# Reading checkpoint files


def read_state_dict(path: str | Path, role: str | None = None, *, shapes_only: bool = False) -> dict[str, Any]:
    """Reads a checkpoint file without running arbitrary code: segzoo's one reader of weights files, the ``.ckpt``
    files of training included (``segzoo.training.read_checkpoint`` is this function).

    ``.safetensors`` is read with safetensors; ``.pth``, ``.pt``, ``.bin``, ``.ckpt`` and ``.tar`` with
    ``torch.load(weights_only=True, map_location="cpu")``. The top-level object is returned as stored: a state dict,
    or a wrapper such as mmseg's ``{"state_dict": ..., "meta": ...}``, Segmenter's ``{"model": ...}`` or Lightning's
    ``{"state_dict": ..., "hyper_parameters": ...}``.

    Args:
        path: The file.
        role: What the file was given as (``"--ckpt_path"``, ``"init_from"``), for messages.
        shapes_only: Every tensor as an empty ``meta`` tensor of its shape and dtype: enough to tell the architecture
            without reading the weights (a safetensors header; a memory-mapped torch zip file).

    Returns:
        The stored dict.

    Raises:
        CheckpointReadError: The file cannot be parsed (truncated or corrupted, or not a checkpoint); the message names
            it. A :class:`CorruptedFileError`.
        UnsafeCheckpointError: The file needs arbitrary Python objects to unpickle.
        UnknownFormatError: Unknown file extension, a folder, or a file that does not hold a dict.
    """
    path = Path(path)
    named = f"{role} {path}" if role else str(path)
    if path.is_dir():
        raise UnknownFormatError(f"{named} is a folder; a checkpoint is a file, such as {path}/model.safetensors")
    if not path.exists():
        raise FileNotFoundError(f"{named} does not exist" if role else f"No such checkpoint file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            if shapes_only:
                with safe_open(path, "pt") as f:
                    return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
            state = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise _unreadable(path, role, "safetensors", err) from err
    elif suffix in STATE_DICT_SUFFIXES:
        try:
            state = _torch_load(path, shapes_only)
        except (PermissionError, IsADirectoryError):
            raise  # the message names the file and the problem
        except pickle.UnpicklingError as err:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            if found:  # a well-formed pickle that holds more than tensors and containers
                raise UnsafeCheckpointError(
                    f"{named} holds pickled Python objects ({found.group(1)}) besides tensors; segzoo reads .pth files "
                    "with torch.load(weights_only=True) only, which does not run the code such objects need. Save "
                    "the state dict alone (torch.save(model.state_dict(), 'weights.pth')) where the file was made "
                    "and pass that file."
                ) from err
            raise _unreadable(path, role, "a PyTorch checkpoint", err) from err
        except Exception as err:  # any other failure to parse the file: truncated, corrupted, not a pickle at all
            raise _unreadable(path, role, "a PyTorch checkpoint", err) from err
    else:
        raise UnknownFormatError(
            f"Don't know how to read {path.name}: expected .safetensors or one of {', '.join(STATE_DICT_SUFFIXES)}."
        )
    if not isinstance(state, dict):
        raise UnknownFormatError(f"{named} holds a {type(state).__name__}, not a dict of tensors")
    return state


def _torch_load(path: Path, shapes_only: bool) -> Any:
    if shapes_only:
        try:  # memory-mapped: no tensor data is read
            return _to_meta(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except RuntimeError:  # a legacy (non-zip) torch file cannot be memory-mapped: read it whole
            pass
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _to_meta(state) if shapes_only else state


def _to_meta(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    return {k: _to_meta(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


def _unreadable(path: Path, role: str | None, kind: str, err: Exception) -> CheckpointReadError:
    text = str(err)
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)  # torch's first lines advise unsafe loading
    reason = detail.group(1) if detail else (text.strip().splitlines() or [""])[0]
    reason = re.split(r"(?<=\.) ", reason, maxsplit=1)[0][:200]  # first sentence: the rest is torch's advice
    named = f"{role} {path}" if role else str(path.resolve())
    return CheckpointReadError(
        f"{named} could not be read as {kind} ({type(err).__name__}: {reason}): the file is truncated or corrupted, or "
        "not a checkpoint. If it is a download or a copy, delete it and retry; otherwise check the file (or use "
        "another checkpoint, e.g. a run's previous last.ckpt)."
    )
