"""The checkpoint table: ``checkpoints.yaml`` loaded into frozen, validated :class:`PretrainedCfg` objects.

Every published checkpoint segzoo knows is one row of ``checkpoints.yaml`` (top level of the repository; the
package ships the same file as ``segzoo/checkpoints.yaml``). Nothing else about a checkpoint lives in code. Rows are
validated when the table is first read: an unknown key, a missing mandatory field or a malformed value raises
:class:`CheckpointTableError` naming the row.

Two kinds of rows:

- segmentation checkpoints name their architecture (``arch: segformer-b2``) and carry the evaluation protocol
  (``eval``), the dataset and the reported scores;
- encoder-only checkpoints (ImageNet weights) carry ``encoder_of``: the architecture patterns whose encoder they
  initialise (``create_model(name, pretrained_encoder=True)``, see :func:`get_encoder_cfg`).

Example:
    >>> from segzoo import get_pretrained_cfg, list_pretrained
    >>> list_pretrained("segformer-b0-*")[:2]
    ['segformer-b0-ade', 'segformer-b0-cityscapes']
    >>> get_pretrained_cfg("segformer-b0-ade").eval.mode
    'whole'
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from segzoo._datasets import DATASETS
from segzoo._errors import CheckpointTableError, UnknownCheckpointError
from segzoo._preprocessing import EVAL_MODES, TTA_STYLES, EvalProtocol, size_pair

FORMATS = ("transformers", "mmseg", "segmenter-official", "segformer-official", "setr-official", "timm", "segzoo")
NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")

_MANDATORY = ("name", "dataset", "crop_size", "mean", "std", "source", "format", "license", "paper")
_OPTIONAL = (
    "num_classes",  # mandatory, but null for an encoder file without a classifier
    "arch",
    "encoder_of",
    "eval",
    "reduce_zero_label",
    "ignore_index",
    "sha256",
    "metrics",
    "notes",
    "model_args",
)
_SOURCE_KEYS = ("hf_hub_id", "filename", "revision", "url", "manual")
_EVAL_KEYS = ("mode", "crop", "stride", "scale", "size_divisor", "min_short_side", "tta")


@dataclass(frozen=True)
class Source:
    """Where a checkpoint file lives: a Hugging Face Hub file or a plain URL.

    Attributes:
        hf_hub_id: Hub repository id (``org/name``).
        filename: File inside the Hub repository.
        revision: Branch, tag or commit of the Hub repository.
        url: Plain HTTP(S) URL (instead of a Hub file).
        manual: ``url`` is a web page a person downloads the file from (Google Drive), not the file: segzoo cannot
            fetch it, and asks for the downloaded file (``segzoo.load(name, checkpoint=path)``).
    """

    hf_hub_id: str | None = None
    filename: str | None = None
    revision: str = "main"
    url: str | None = None
    manual: bool = False

    @property
    def is_hf_hub(self) -> bool:
        """Whether the file lives on the Hugging Face Hub."""
        return self.hf_hub_id is not None

    def describe(self) -> str:
        """A short human-readable location for messages."""
        if self.is_hf_hub:
            return f"hf-hub:{self.hf_hub_id}@{self.revision}/{self.filename}"
        return str(self.url)

    def to_dict(self) -> dict[str, Any]:
        """The source as written in ``checkpoints.yaml``."""
        if self.is_hf_hub:
            return {"hf_hub_id": self.hf_hub_id, "filename": self.filename, "revision": self.revision}
        return {"url": self.url, "manual": True} if self.manual else {"url": self.url}


@dataclass(frozen=True)
class PretrainedCfg:
    """One row of ``checkpoints.yaml``: the weights, their preprocessing and evaluation contract, and provenance.

    Attributes:
        name: Checkpoint name for ``segzoo.load``.
        source: Where the file lives.
        format: File format (one of :data:`FORMATS`).
        dataset: Dataset key (``segzoo._datasets.DATASETS``) or ``imagenet-1k`` for encoders.
        num_classes: Classes of the published head (``None``: an encoder file without a classifier).
        crop_size: Training crop ``(height, width)`` (encoders: pretraining input size).
        mean: RGB normalisation mean on the 0-255 scale.
        std: RGB normalisation std on the 0-255 scale.
        license: Licence id.
        paper: Paper URL.
        arch: Architecture name for ``segzoo.create_model`` (segmentation checkpoints).
        encoder_of: Architecture patterns whose encoder these weights initialise (encoder-only checkpoints).
        eval: The publisher's test pipeline (segmentation checkpoints): :class:`~segzoo.EvalProtocol` with this row's
            ``mean`` and ``std``.
        reduce_zero_label: Label 0 is ignored and the others shift down by one (ADE20K).
        ignore_index: Label value ignored by the loss and the metric.
        sha256: Full sha256 of the file or its published leading hex digits; ``None`` when unknown.
        metrics: ``{"publisher": {...}, "paper": {...}}`` reported scores (mIoU in %).
        notes: Free text.
        model_args: Overrides passed to ``segzoo.create_model`` for this checkpoint.
    """

    name: str
    source: Source
    format: str
    dataset: str
    num_classes: int | None
    crop_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    license: str
    paper: str
    arch: str | None = None
    encoder_of: tuple[str, ...] = ()
    eval: EvalProtocol | None = None
    reduce_zero_label: bool = False
    ignore_index: int = 255
    sha256: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict, hash=False)
    notes: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def is_encoder(self) -> bool:
        """Whether this is an encoder-only (ImageNet) checkpoint."""
        return self.arch is None

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Class names of the dataset, or ``None`` for datasets segzoo has no names for (ImageNet)."""
        entry = DATASETS.get(self.dataset)
        return entry[0] if entry else None

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...] | None:
        """RGB colour per class, or ``None`` where :attr:`class_names` is ``None``."""
        entry = DATASETS.get(self.dataset)
        return entry[1] if entry else None

    def to_dict(self) -> dict[str, Any]:
        """This row as ``model.pretrained_cfg`` and ``config.json`` hold it: every field under its own name with the
        same meaning, as JSON values (pairs as lists; ``source`` and ``eval`` as their ``to_dict()``), and the
        dataset's ``class_names`` and ``palette``."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {key: _json(value) for key, value in values.items()} | {
            "class_names": _json(self.class_names), "palette": _json(self.palette),
        }  # fmt: skip


def _json(value: Any) -> Any:
    if isinstance(value, (Source, EvalProtocol)):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------------------------
# Parsing and validation


def _fail(name: str, message: str) -> CheckpointTableError:
    return CheckpointTableError(f"checkpoints.yaml entry {name!r}: {message}")


def _check_keys(name: str, where: str, given: dict, allowed: tuple[str, ...], mandatory: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise _fail(name, f"unknown key(s) {unknown} in {where}; allowed keys are {list(allowed)}")
    missing = [key for key in mandatory if given.get(key) is None]
    if missing:
        raise _fail(name, f"missing mandatory field(s) {missing} in {where}")


def _pair(name: str, key: str, value: Any) -> tuple[int, int] | None:
    """``[h, w]`` (or a single int meaning a square) as a tuple of two positive ints (:func:`size_pair`)."""
    if value is None:
        return None
    try:
        return size_pair(value, key)
    except ValueError as err:
        raise _fail(name, str(err)) from None


def _triple(name: str, key: str, value: Any) -> tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise _fail(name, f"{key} must be three numbers (R, G, B on the 0-255 scale), got {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _parse_source(name: str, raw: Any) -> Source:
    if not isinstance(raw, dict):
        raise _fail(name, f"source must be a mapping with hf_hub_id + filename (+ revision) or url, got {raw!r}")
    _check_keys(name, "source", raw, _SOURCE_KEYS)
    if raw.get("url") and not raw.get("hf_hub_id"):
        if raw.get("filename") or raw.get("revision"):
            raise _fail(name, "source with a url takes no filename or revision (the file name is the URL's last part)")
        if not str(raw["url"]).startswith(("http://", "https://")):
            raise _fail(name, f"source url must start with http:// or https://, got {raw['url']!r}")
        if not isinstance(raw.get("manual", False), bool):
            raise _fail(name, f"source manual must be true or false, got {raw['manual']!r}")
        return Source(url=str(raw["url"]), manual=bool(raw.get("manual", False)))
    if raw.get("manual"):
        raise _fail(name, "source manual: true goes with a url (the page to download the file from)")
    if raw.get("hf_hub_id") and not raw.get("url"):
        if not raw.get("filename"):
            raise _fail(name, "source with hf_hub_id needs a filename")
        if str(raw["hf_hub_id"]).count("/") != 1:
            raise _fail(name, f"hf_hub_id must look like 'org/name', got {raw['hf_hub_id']!r}")
        return Source(
            hf_hub_id=str(raw["hf_hub_id"]), filename=str(raw["filename"]), revision=str(raw.get("revision") or "main")
        )
    raise _fail(name, "source needs exactly one of hf_hub_id (with filename) or url")


def _parse_eval(name: str, raw: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> EvalProtocol:
    if not isinstance(raw, dict):
        raise _fail(
            name, f"eval must be a mapping like {{mode: slide, crop: [512, 512], stride: [341, 341]}}, got {raw!r}"
        )
    _check_keys(name, "eval", raw, _EVAL_KEYS, mandatory=("mode", "tta"))
    if raw["mode"] not in EVAL_MODES:
        raise _fail(name, f"eval mode must be one of {list(EVAL_MODES)}, got {raw['mode']!r}")
    if raw["tta"] not in TTA_STYLES:
        raise _fail(name, f"eval.tta must be one of {list(TTA_STYLES)}, got {raw['tta']!r}")
    if raw["mode"] == "slide" and (raw.get("crop") is None or raw.get("stride") is None):
        raise _fail(name, "eval mode slide needs crop and stride")
    if raw["mode"] == "whole" and raw.get("scale") is None:
        raise _fail(name, "eval mode whole needs the keep-ratio test scale [long, short]")
    try:
        return EvalProtocol(
            mean=mean, std=std, test_scale=raw.get("scale"), size_divisor=raw.get("size_divisor"), mode=raw["mode"],
            crop=raw.get("crop"), stride=raw.get("stride"), tta_style=raw["tta"],
            min_short_side=raw.get("min_short_side"),
        )  # fmt: skip
    except ValueError as err:
        raise _fail(name, f"eval: {err}") from None


def _parse_metrics(name: str, raw: Any) -> dict[str, dict[str, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise _fail(name, f"metrics must map a source (publisher, paper) to {{metric: value}}, got {raw!r}")
    unknown = sorted(set(raw) - {"publisher", "paper"})
    if unknown:
        raise _fail(name, f"unknown metrics source(s) {unknown}; use publisher or paper")
    for scores in raw.values():
        for metric, value in scores.items():
            if not isinstance(value, (int, float)):
                raise _fail(name, f"metric {metric} must be a number, got {value!r}")
    return {source: {metric: float(value) for metric, value in scores.items()} for source, scores in raw.items()}


def parse_entry(raw: dict[str, Any]) -> PretrainedCfg:
    """Validates one row of ``checkpoints.yaml`` and turns it into a :class:`PretrainedCfg`.

    Args:
        raw: The row as read by ``yaml.safe_load``.

    Returns:
        The frozen config.

    Raises:
        CheckpointTableError: An unknown key, a missing mandatory field or a malformed value; the message names
            the row.
    """
    name = raw.get("name", "<no name>") if isinstance(raw, dict) else "<not a mapping>"
    if not isinstance(raw, dict):
        raise _fail(name, f"each entry must be a mapping, got {raw!r}")
    _check_keys(name, "the entry", raw, _MANDATORY + _OPTIONAL, mandatory=_MANDATORY)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _fail(name, "the name must be lowercase kebab-case (letters, digits and single dashes)")
    arch, encoder_of = raw.get("arch"), raw.get("encoder_of")
    if (arch is None) == (not encoder_of):
        raise _fail(name, "give exactly one of arch (segmentation checkpoint) or encoder_of (encoder-only checkpoint)")
    if encoder_of is not None and not (isinstance(encoder_of, list) and all(isinstance(p, str) for p in encoder_of)):
        raise _fail(name, f"encoder_of must be a list of architecture patterns, got {encoder_of!r}")
    if raw["format"] not in FORMATS:
        raise _fail(name, f"unknown format {raw['format']!r}; known formats are {list(FORMATS)}")
    num_classes = raw.get("num_classes")
    if num_classes is None and not ("num_classes" in raw and encoder_of):
        raise _fail(
            name,
            "missing mandatory field(s) ['num_classes'] in the entry (null only for an encoder file "
            "without a classifier)",
        )
    if not (isinstance(num_classes, int) and num_classes > 0) and not (num_classes is None and encoder_of):
        raise _fail(
            name,
            f"num_classes must be a positive integer (null only for an encoder without a classifier), "
            f"got {num_classes!r}",
        )
    if arch is not None:
        _check_keys(
            name,
            "a segmentation entry",
            raw,
            _MANDATORY + _OPTIONAL,
            mandatory=("eval", "reduce_zero_label", "metrics"),
        )
        if raw["dataset"] not in DATASETS:
            raise _fail(name, f"unknown dataset {raw['dataset']!r}; known datasets are {sorted(DATASETS)}")
    sha256 = raw.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and SHA256_PATTERN.match(sha256)):
        raise _fail(name, f"sha256 must be 8 to 64 lowercase hex digits (quote it in YAML) or null, got {sha256!r}")
    model_args = raw.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise _fail(name, f"model_args must be a mapping, got {model_args!r}")
    mean, std = _triple(name, "mean", raw["mean"]), _triple(name, "std", raw["std"])
    return PretrainedCfg(
        name=name,
        source=_parse_source(name, raw["source"]),
        format=raw["format"],
        dataset=str(raw["dataset"]),
        num_classes=num_classes,
        crop_size=_pair(name, "crop_size", raw["crop_size"]),
        mean=mean,
        std=std,
        license=str(raw["license"]),
        paper=str(raw["paper"]),
        arch=arch,
        encoder_of=tuple(encoder_of or ()),
        eval=_parse_eval(name, raw["eval"], mean, std) if raw.get("eval") is not None else None,
        reduce_zero_label=bool(raw.get("reduce_zero_label", False)),
        ignore_index=int(raw.get("ignore_index", 255)),
        sha256=sha256,
        metrics=_parse_metrics(name, raw.get("metrics")),
        notes=raw.get("notes"),
        model_args=dict(model_args),
    )


def load_table(path: str | Path | None = None) -> dict[str, PretrainedCfg]:
    """Reads and validates a checkpoint table.

    Args:
        path: A ``checkpoints.yaml`` file; by default the one shipped in the package.

    Returns:
        ``{name: PretrainedCfg}`` in table order.

    Raises:
        CheckpointTableError: A malformed row or a duplicated name.
    """
    if path is None:
        text = resources.files("segzoo").joinpath("checkpoints.yaml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        raise CheckpointTableError(f"{path or 'segzoo/checkpoints.yaml'}: expected a mapping with a 'checkpoints' list")
    table: dict[str, PretrainedCfg] = {}
    for raw in data["checkpoints"]:
        cfg = parse_entry(raw)
        if cfg.name in table:
            raise _fail(cfg.name, "the name appears twice; checkpoint names must be unique")
        table[cfg.name] = cfg
    return table


@functools.cache
def _default_table() -> dict[str, PretrainedCfg]:
    return load_table()


# ----------------------------------------------------------------------------------------------------------------
# Public lookup functions


KINDS = ("segmentation", "encoder")


def list_pretrained(pattern: str | None = None, *, kind: str = "segmentation", arch: str | None = None) -> list[str]:
    """Names of the known checkpoints, in table order.

    Every name is accepted by the function next to it: segmentation checkpoints by ``segzoo.load(name)``, encoder
    checkpoints (ImageNet weights) by ``segzoo.create_model(arch, pretrained_encoder=name)``.

    Args:
        pattern: fnmatch pattern, e.g. ``"segformer-*-ade*"``.
        kind: ``"segmentation"`` (default) or ``"encoder"``.
        arch: Only the segmentation checkpoints of this architecture; the first is the one
            ``segzoo.create_model(arch, pretrained=True)`` loads.

    Returns:
        Matching checkpoint names.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    return [
        name
        for name, cfg in _default_table().items()
        if (pattern is None or fnmatch.fnmatchcase(name, pattern))
        and cfg.is_encoder == (kind == "encoder")
        and (arch is None or cfg.arch == arch)
    ]


def _unknown(kind: str, name: str, candidates: list[str]) -> UnknownCheckpointError:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.4)
    hint = f" Closest: {', '.join(close)}." if close else ""
    return UnknownCheckpointError(
        f"Unknown {kind} {name!r}.{hint} segzoo.list_pretrained() lists all {len(candidates)} names; to load weights "
        "that are not in the table, pass checkpoint='path/to/file' (or a folder)."
    )


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The table row of a checkpoint.

    Args:
        name: Checkpoint name, e.g. ``"segformer-b2-ade"``.

    Returns:
        Its :class:`PretrainedCfg`.

    Raises:
        UnknownCheckpointError: Unknown name (a ``KeyError`` and ``ValueError``); the message lists the closest
            names.
    """
    table = _default_table()
    if name not in table:
        raise _unknown("checkpoint", name, list(table))
    return table[name]


def get_encoder_cfg(arch: str, name: str | None = None) -> PretrainedCfg:
    """The ImageNet encoder checkpoint for an architecture: ``name`` if given (it must fit), else the first row whose
    ``encoder_of`` matches it.

    Args:
        arch: Architecture name, e.g. ``"segmenter-b16-mask"``.
        name: An encoder checkpoint from ``list_pretrained(kind="encoder")``.

    Returns:
        The encoder's :class:`PretrainedCfg`.

    Raises:
        UnknownCheckpointError: No encoder checkpoint fits this architecture, or ``name`` is not one that does.
    """
    if name is not None:
        cfg = get_pretrained_cfg(name)
        if not cfg.is_encoder:
            raise UnknownCheckpointError(
                f"{name!r} is a segmentation checkpoint, not an encoder: segzoo.load({name!r}) loads it; "
                f"encoder checkpoints: {', '.join(list_pretrained(kind='encoder'))}"
            )
        if not any(fnmatch.fnmatchcase(arch, pattern) for pattern in cfg.encoder_of):
            raise UnknownCheckpointError(
                f"encoder checkpoint {name!r} does not fit {arch!r}: it initialises {', '.join(cfg.encoder_of)}"
            )
        return cfg
    for cfg in _default_table().values():
        if any(fnmatch.fnmatchcase(arch, pattern) for pattern in cfg.encoder_of):
            return cfg
    fitting = [name for name, cfg in _default_table().items() if cfg.is_encoder]
    raise UnknownCheckpointError(
        f"No pretrained encoder in checkpoints.yaml fits architecture {arch!r}. Encoder checkpoints: "
        f"{', '.join(fitting)}. Build it with pretrained_encoder=False or load encoder weights yourself."
    )
