"""Which architecture a weights file is for, read from its key names and shapes.

:func:`infer_architecture` works on a state dict already converted to segzoo names (``segzoo.convert.CONVERTERS``),
so every file format goes through one code path. It never restates the size tables: the candidates are the registry
rows whose encoder arguments agree with what the keys say (MiT widths and depths; ViT width, depth and patch size),
and each candidate is checked against the exact key names and shapes of its model, built once on the meta device
(no memory) and cached. The classifier's shapes give the number of classes, the position embeddings the crop
(``img_size``). An mmsegmentation checkpoint's config (``meta["cfg"]`` / ``meta["config"]``, Python source) then
confirms the match or decides between architectures whose weights look alike (out_indices, heads, position
resampling); it is read with ``ast``, never executed, and is never the only evidence.
"""

from __future__ import annotations

import ast
import inspect
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from segzoo._errors import AmbiguousArchitectureError, ArchitectureNotFoundError
from segzoo.checkpoints._convert import ConversionError
from segzoo.models._encoder_decoder import EncoderDecoder
from segzoo.models._registry import ARCHS, ENCODERS, MIT_SIZES, VIT_SIZES, Arch

log = logging.getLogger("segzoo")

# The candidates are built with this many classes: a dimension of this size in a candidate's shapes is a class
# dimension (no architecture has a layer this wide), so the file's size there is its number of classes.
_PROBE_CLASSES = 997

# mmseg config argument -> the registry row argument it must equal (compared only where the row sets it).
_MMSEG_CONFIG_ARGS = [
    ("backbone", "patch_size", "encoder_args", "patch_size"),
    ("backbone", "num_heads", "encoder_args", "num_heads"),
    ("backbone", "out_indices", "encoder_args", "out_indices"),
    ("backbone", "final_norm", "encoder_args", "final_norm"),
    ("backbone", "interpolate_mode", "encoder_args", "pos_embed_interp"),
    ("decode_head", "num_convs", "decoder_args", "num_convs"),
    ("decode_head", "kernel_size", "decoder_args", "kernel_size"),
    ("decode_head", "up_scale", "decoder_args", "up_scale"),
    ("decode_head", "num_layers", "decoder_args", "depth"),
    ("decode_head", "num_heads", "decoder_args", "num_heads"),
]


@dataclass(frozen=True)
class ArchMatch:
    """The architecture a state dict is for.

    Attributes:
        arch: Architecture name for ``segzoo.create_model``.
        num_classes: Classes of the decode head.
        img_size: Crop the ViT position embeddings are stored for (``None`` for encoders without them).
        encoder: What the encoder keys say, in words (``"a ViT-S/16 encoder (384 wide, 12 blocks, ...)"``).
        confirmed_by_config: The file's mmseg config agreed with the architecture's settings.
        class_names: Class names stored in the file's mmseg ``meta``, if any.
    """

    arch: str
    num_classes: int
    img_size: int | None
    encoder: str
    confirmed_by_config: bool = False
    class_names: tuple[str, ...] | None = None

    def describe(self) -> str:
        crop = f", position embeddings for {self.img_size}×{self.img_size}" if self.img_size else ""
        how = "key names and shapes" + (", confirmed by its mmseg config" if self.confirmed_by_config else "")
        return f"{self.arch} ({self.encoder}, {self.num_classes} classes{crop}; from its {how})"


def infer_architecture(
    state_dict: Mapping[str, torch.Tensor],
    meta: Mapping | None = None,
    source: str | None = None,
    fmt: str | None = None,
) -> ArchMatch:
    """The registry architecture whose weights have exactly these key names and shapes.

    Args:
        state_dict: Weights in segzoo names (convert first); meta-device tensors are enough.
        meta: An mmsegmentation checkpoint's ``meta`` dict; its config confirms or disambiguates.
        source: The file, named in error messages.
        fmt: The file's format (``segzoo.checkpoints._convert.detect_format``): a format with rows of its own
            (``Arch.checkpoint_format``, official SETR) is matched to those rows only, any other to the shared rows.

    Raises:
        ArchitectureNotFoundError: The encoder or the head fits no architecture (the message says what was found).
        AmbiguousArchitectureError: Several architectures fit and nothing in the file decides between them.
    """
    try:
        return _infer(state_dict, meta, repr(str(source)) if source else "path", fmt)
    except ConversionError as err:
        if source:
            err.args = (f"{source}: {err}",)
        raise


def rows_for_format(fmt: str | None) -> list[Arch]:
    """The registry rows a file of format ``fmt`` may be for: the rows of that format's own code where it has some,
    else the shared rows."""
    own = [r for r in ARCHS.values() if fmt is not None and r.checkpoint_format == fmt]
    return own or [r for r in ARCHS.values() if r.checkpoint_format is None]


def _infer(state_dict: Mapping[str, torch.Tensor], meta: Mapping | None, path: str, fmt: str | None) -> ArchMatch:
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    kind, found_args, encoder = describe_encoder(shapes)
    candidates = rows_for_format(fmt)
    rows = [r for r in candidates if r.encoder == kind and _agrees(r, found_args)]
    if not rows:
        same_kind = sorted(r.name for r in candidates if r.encoder == kind and "-test" not in r.name)
        raise ArchitectureNotFoundError(
            f"found {encoder}; no segzoo architecture has this encoder (those with a {kind} encoder: "
            f"{', '.join(same_kind)}). segzoo.create_model(<one of them>, encoder_args={{...}}) builds a model with "
            "other encoder sizes, to load these weights into with model.load_state_dict."
        )
    if not any(k.startswith("decode_head.") for k in shapes):
        raise ArchitectureNotFoundError(
            f"found {encoder} with no decode head: an encoder checkpoint, not a segmentation model. Build one of the "
            f"architectures with this encoder ({', '.join(r.name for r in rows)}) with segzoo.create_model(<name>, "
            "num_classes=...) and copy these weights into it with model.load_state_dict(state, strict=False)."
        )
    checked = {r.name: _differences(_signature(r), shapes) for r in rows}
    fits = {name: classes for name, (problems, classes) in checked.items() if not problems}
    if not fits:
        closest = min(checked, key=lambda n: len(checked[n][0]))
        head = sorted({".".join(k.split(".")[:2]) for k in shapes if k.startswith(("decode_head.", "neck."))})
        raise ArchitectureNotFoundError(
            f"found {encoder} and a decode head ({', '.join(head)}) that fits no architecture with this encoder; "
            f"the closest, {closest}, differs in {len(checked[closest][0])} weights: "
            f"{'; '.join(checked[closest][0][:4])}. If the head is one segzoo has with other widths, load it with "
            f"segzoo.load('<architecture>', checkpoint={path}, decoder_args={{...}})."
        )
    config = mmseg_config(meta)
    confirmed = False
    if config is not None and isinstance(config.get("model"), Mapping):
        conflicts = {name: _config_conflicts(ARCHS[name], config["model"]) for name in fits}
        agreeing = {name: classes for name, classes in fits.items() if not conflicts[name]}
        if not agreeing:
            name = next(iter(fits))
            raise ArchitectureNotFoundError(
                f"the weights fit {', '.join(fits)} ({encoder}), but the file's mmseg config says "
                f"{'; '.join(conflicts[name])}: a model built with segzoo's settings would not compute what was "
                f"trained. To load it with the config's settings: segzoo.load({name!r}, checkpoint={path}, "
                "encoder_args={...}, decoder_args={...})."
            )
        fits, confirmed = agreeing, True
    if len(fits) > 1:
        names = sorted(fits)
        raise AmbiguousArchitectureError(
            f"found {encoder}; the weights fit {len(names)} architectures: {', '.join(names)} (they differ only in "
            f"settings the weights do not show). Choose one: segzoo.load({names[0]!r}, checkpoint={path}).",
            names,
        )
    ((arch, num_classes),) = fits.items()
    return ArchMatch(
        arch=arch,
        num_classes=num_classes,
        img_size=_img_size(shapes, _signature(ARCHS[arch])),
        encoder=encoder,
        confirmed_by_config=confirmed,
        class_names=_class_names(meta, num_classes),
    )


# --------------------------------------------------------------------------------------------------------------
# Encoder


def describe_encoder(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, dict[str, Any], str]:
    """The encoder kind (a registry ``encoder`` name), its arguments as the keys show them (in registry argument
    names), and a description in words."""

    def depth(prefix: str) -> int:
        return len({k[len(prefix) :].split(".")[0] for k in shapes if k.startswith(prefix)})

    if "backbone.patch_embed1.proj.weight" in shapes:
        widths = tuple(
            shapes[f"backbone.patch_embed{i}.proj.weight"][0]
            for i in range(1, 5)
            if f"backbone.patch_embed{i}.proj.weight" in shapes
        )
        depths = tuple(depth(f"backbone.block{i}.") for i in range(1, 5))
        args = {"embed_dims": widths, "depths": depths}
        size = next((s for s, row in MIT_SIZES.items() if row == args), None)
        name = f"MiT-{size.upper()}" if size else "MiT"
        return "mit", args, f"a {name} encoder (widths {_join(widths)}, depths {_join(depths)})"
    hybrid = any(k.startswith("backbone.patch_embed.backbone.") for k in shapes)
    if "backbone.patch_embed.proj.weight" in shapes or hybrid:
        width = shapes["backbone.pos_embed"][-1] if "backbone.pos_embed" in shapes else None
        args = {
            "embed_dim": width,
            "depth": depth("backbone.blocks."),
            "final_norm": "backbone.norm.weight" in shapes,
            "dist_token": "backbone.reg_token" in shapes,
        }
        if not hybrid:
            args["patch_size"] = shapes["backbone.patch_embed.proj.weight"][-1]
            width = shapes["backbone.patch_embed.proj.weight"][0]
            args["embed_dim"] = width
        size = next((s for s, (w, d, _) in VIT_SIZES.items() if (w, d) == (width, args["depth"])), None)
        name = f"ViT-{size.upper()}" if size else "ViT"
        parts = [f"{width} wide", f"{args['depth']} blocks"]
        parts += ["class token"] if "backbone.cls_token" in shapes else []
        parts += ["distillation token"] if "backbone.reg_token" in shapes else []
        parts += ["final norm"] if "backbone.norm.weight" in shapes else []
        if hybrid:
            return "hybrid_vit", args, f"a ResNet-50 + {name} hybrid encoder ({', '.join(parts)})"
        return "vit", args, f"a {name}/{args['patch_size']} encoder ({', '.join(parts)})"
    first = sorted({".".join(k.split(".")[:2]) for k in shapes})[:8]
    raise ArchitectureNotFoundError(f"no MiT or ViT encoder weights found (key prefixes: {', '.join(first)})")


def _agrees(row: Arch, found: Mapping[str, Any]) -> bool:
    """The row's encoder arguments (or the encoder's defaults) equal what the keys show, where it has them."""
    params = inspect.signature(ENCODERS[row.encoder]).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    args = defaults | row.encoder_args
    return all(_normal(args[k]) == _normal(v) for k, v in found.items() if k in args)


def _join(values) -> str:
    return ",".join(str(v) for v in values)


# --------------------------------------------------------------------------------------------------------------
# Exact check against a candidate's own parameters


@dataclass(frozen=True)
class _Signature:
    shapes: dict[str, tuple[int, ...]]  # without auxiliary heads, built for _PROBE_CLASSES classes
    patch: int | None  # ViT patch (grid cell) size, None without position embeddings


_SIGNATURES: dict[str, tuple[Arch, _Signature]] = {}


def _signature(row: Arch) -> _Signature:
    """The key names and shapes of ``row``'s model (built on the meta device once per process and row)."""
    cached = _SIGNATURES.get(row.name)
    if cached is None or cached[0] is not row:
        model = EncoderDecoder.from_arch(row.name, num_classes=_PROBE_CLASSES, aux_heads=False, device="meta")
        patch = model.backbone.patch_embed.patch_size[0] if hasattr(model.backbone, "pos_embed") else None
        cached = (row, _Signature({k: tuple(v.shape) for k, v in model.state_dict().items()}, patch))
        _SIGNATURES[row.name] = cached
    return cached[1]


def _differences(sig: _Signature, shapes: Mapping[str, tuple[int, ...]]) -> tuple[list[str], int | None]:
    """What keeps ``shapes`` from loading into the candidate (auxiliary heads aside: they load when they fit and are
    dropped otherwise), and the number of classes its class dimensions show."""
    got = {k: v for k, v in shapes.items() if not k.startswith("auxiliary_head.")}
    if "backbone.cls_token" not in sig.shapes:  # mmseg's SETR-MLA stores a class token it never uses
        got.pop("backbone.cls_token", None)
    expected = set(sig.shapes)
    if "backbone.patch_embed.proj.weight" in got:  # mmseg >= 1.1's ViTs: load builds the projection without a bias
        expected.discard("backbone.patch_embed.proj.bias")
    problems = [f"missing {k}" for k in sorted(expected - got.keys())]
    problems += [f"unexpected {k}" for k in sorted(got.keys() - sig.shapes.keys())]
    classes = set()
    for key in sorted(sig.shapes.keys() & got.keys()):
        want, have = sig.shapes[key], got[key]
        if key == "backbone.pos_embed":  # any grid: resampled to the model's crop
            fits = len(want) == len(have) and want[-1] == have[-1]
        else:
            fits = len(want) == len(have) and all(w in (h, _PROBE_CLASSES) for w, h in zip(want, have))
            classes.update(h for w, h in zip(want, have) if w == _PROBE_CLASSES)
        if not fits:
            problems.append(f"{key} is {list(have)}, expected {[w if w != _PROBE_CLASSES else 'K' for w in want]}")
    if len(classes) > 1:
        problems.append(f"the class layers disagree on the number of classes ({sorted(classes)})")
    return problems, next(iter(classes), None)


def _img_size(shapes: Mapping[str, tuple[int, ...]], sig: _Signature) -> int | None:
    """The crop the position embeddings were stored for: grid × patch (a square grid after any class token)."""
    if sig.patch is None or "backbone.pos_embed" not in shapes:
        return None
    tokens = shapes["backbone.pos_embed"][1] - ("backbone.cls_token" in shapes) - ("backbone.reg_token" in shapes)
    grid = math.isqrt(tokens)
    return grid * sig.patch if grid * grid == tokens else None


# --------------------------------------------------------------------------------------------------------------
# mmsegmentation's config


def mmseg_config(meta: Mapping | None) -> dict[str, Any] | None:
    """The top-level assignments of the config text an mmseg checkpoint carries (``meta["cfg"]`` in 1.x,
    ``meta["config"]`` in 0.x), as plain values; parts that are not literals or ``dict(...)`` calls are left out.
    The text is parsed, never executed."""
    text = None
    if isinstance(meta, Mapping):
        text = meta.get("cfg") if isinstance(meta.get("cfg"), str) else meta.get("config")
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        log.debug("the checkpoint's mmseg config could not be parsed; ignoring it")
        return None
    config = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _literal(node.value)
            if value is not _UNKNOWN:
                config[node.targets[0].id] = value
    return config


_UNKNOWN = object()


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        items = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
        return {k: v for k, v in items.items() if v is not _UNKNOWN}
    if isinstance(node, ast.Dict):
        keys = [_literal(k) if k is not None else _UNKNOWN for k in node.keys]
        return {k: _literal(v) for k, v in zip(keys, node.values) if isinstance(k, str)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        if any(item is _UNKNOWN for item in items):
            return _UNKNOWN
        return items if isinstance(node, ast.List) else tuple(items)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNKNOWN


def _config_conflicts(row: Arch, model_cfg: Mapping[str, Any]) -> list[str]:
    """Where the mmseg config's model settings differ from the ones ``row`` sets."""
    conflicts = []
    for section, cfg_name, part, row_name in _MMSEG_CONFIG_ARGS:
        cfg_section, row_args = model_cfg.get(section), getattr(row, part)
        if not isinstance(cfg_section, Mapping) or cfg_name not in cfg_section or row_name not in row_args:
            continue
        said, ours = _normal(cfg_section[cfg_name]), _normal(row_args[row_name])
        if cfg_name == "out_indices":
            depth = row.encoder_args.get("depth", 0)
            said = tuple(i % depth if depth else i for i in (said if isinstance(said, tuple) else (said,)))
        if said != ours:
            conflicts.append(f"{section} {cfg_name}={said!r} where {row.name} has {row_name}={ours!r}")
    return conflicts


def _normal(value: Any) -> Any:
    return tuple(_normal(v) for v in value) if isinstance(value, (list, tuple)) else value


def _class_names(meta: Mapping | None, num_classes: int) -> tuple[str, ...] | None:
    """Class names from an mmseg checkpoint's meta (``CLASSES`` in 0.x, ``dataset_meta["classes"]`` in 1.x)."""
    if not isinstance(meta, Mapping):
        return None
    names = meta.get("CLASSES")
    if names is None and isinstance(meta.get("dataset_meta"), Mapping):
        names = meta["dataset_meta"].get("classes")
    if isinstance(names, (list, tuple)) and len(names) == num_classes and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None
