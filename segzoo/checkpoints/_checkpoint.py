"""A checkpoint as read, before any model exists (:class:`Checkpoint`), and how its weights go into a model.

Every source ``segzoo.load`` reads (a table row, a file, a folder, a Hub repository, a ``train.py`` checkpoint) ends in
a :class:`Checkpoint`: the architecture the weights fit, the ``from_arch`` arguments that rebuild the network they
were trained as, their classes, the weights in segzoo's names, and the ``pretrained_cfg`` the model is to carry. The
model itself is built by its class (``SegmentationModel.from_pretrained``), which then calls
:meth:`Checkpoint.load_into`: this layer never needs to know which class that is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segzoo.checkpoints._convert import ConversionError, adapt_to_model
from segzoo.checkpoints._table import PretrainedCfg
from segzoo.models._encoder_decoder import EncoderDecoder
from segzoo.models._registry import ARCHS

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


@dataclass
class Checkpoint:
    """Weights as read, with what it takes to build the network they fit.

    Attributes:
        arch: The architecture (registry row) the weights fit.
        num_classes: The classes of the weights' head.
        model_args: ``from_arch`` overrides that rebuild the network: the table row's or the saved ones, the format's
            numerics, what the weights show (:func:`network_args`), and the caller's.
        state: The weights in segzoo's names.
        fmt: The format they were read in (``"segzoo"``, ``"mmseg"``, ...).
        source: The file they came from, for messages.
        pretrained_cfg: What the model's ``pretrained_cfg`` becomes (a table row's ``to_dict()``, a saved one, ...).
    """

    arch: str
    num_classes: int
    model_args: dict[str, Any]
    state: dict[str, torch.Tensor]
    fmt: str
    source: str
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)

    def load_into(self, model: EncoderDecoder) -> EncoderDecoder:
        """Strictly load the weights into ``model`` (built with ``arch``, ``num_classes`` and ``model_args``) and give
        it ``pretrained_cfg``. Auxiliary heads absent from (or shaped unlike) the weights are dropped, since they only
        serve training."""
        state = adapt_to_model(self.state, model, pos_embed_interp=pos_embed_interp(model))
        own = model.state_dict()
        aux_in_ckpt = {k for k in state if k.startswith("auxiliary_head.")}
        aux_fits = (
            aux_in_ckpt
            and all(k in own and own[k].shape == state[k].shape for k in aux_in_ckpt)
            and all(k in aux_in_ckpt for k in own if k.startswith("auxiliary_head."))
        )
        if len(model.auxiliary_head) and not aux_fits:
            log.info(
                "%s: no matching auxiliary-head weights; the auxiliary heads are dropped (inference never uses them)",
                self.source,
            )
            model.drop_auxiliary_heads()
        if not aux_fits:
            state = {k: v for k, v in state.items() if k not in aux_in_ckpt}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConversionError(f"{self.source} ({self.fmt} format) does not fit {model.arch_name}: {err}") from None
        model.pretrained_cfg = dict(self.pretrained_cfg)
        return model


def network_args(args: dict[str, Any], fmt: str, arch: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``args`` completed with what the format and the weights say about the network; explicit args win.

    - the numerics checkpoints of format ``fmt`` were trained with (:data:`FORMAT_MODEL_ARGS`);
    - a ViT patch projection without bias (mmseg >= 1.1 writes its ViTs with ``patch_bias=False``) is built without
      one, so that no parameter trains that the publisher's model does not have; the fact travels in the model's
      ``build_args`` (saved configs and training checkpoints).
    """
    fmt_args = dict(FORMAT_MODEL_ARGS.get(fmt, {}))
    decoder_args = FORMAT_DECODER_ARGS.get((fmt, ARCHS[arch].decoder))
    if decoder_args:
        fmt_args["decoder_args"] = decoder_args
    out = {k: v for k, v in fmt_args.items() if k not in ("encoder_args", "decoder_args")} | dict(args)
    for part in ("encoder_args", "decoder_args"):
        if part in fmt_args:
            out[part] = fmt_args[part] | dict(args.get(part) or {})
    if "backbone.patch_embed.proj.weight" in state and "backbone.patch_embed.proj.bias" not in state:
        out["encoder_args"] = {"patch_bias": False} | dict(out.get("encoder_args") or {})
    return out


def pos_embed_interp(model: EncoderDecoder) -> str:
    """How ``model``'s encoder resamples position embeddings (what foreign ones are resampled with on loading)."""
    return getattr(model.backbone, "pos_embed_interp", "bicubic")


def head_classes(state: dict[str, torch.Tensor], arch: str) -> int:
    """The number of classes of a converted checkpoint's head."""
    for key in ("decode_head.conv_seg.bias", "decode_head.linear_pred.bias", "decode_head.mask_norm.weight"):
        if key in state:
            return state[key].shape[0]
    raise ConversionError(f"cannot tell the number of classes of this {arch} checkpoint: it has no decode head")


def table_cfg_for(
    cfg: PretrainedCfg, num_classes: int, source: Path | str, class_names: list[str] | None = None
) -> dict[str, Any]:
    """The table row's ``pretrained_cfg`` for weights given with ``checkpoint=``: the row's preprocessing and
    evaluation; its classes (names, palette, dataset, scores) only when the weights have its number of classes,
    otherwise the weights' own class names if they carry any."""
    out = cfg.to_dict()
    if num_classes == cfg.num_classes:
        return out
    log.warning(
        "%s has %d classes, checkpoint %s %d: the model takes %s's preprocessing and evaluation, and %s",
        source,
        num_classes,
        cfg.name,
        cfg.num_classes,
        cfg.name,
        "the class names stored with the weights" if class_names else "no class names (a default palette)",
    )
    names = list(class_names) if class_names and len(class_names) == num_classes else None
    return out | {"num_classes": num_classes, "class_names": names, "palette": None, "dataset": None, "metrics": {}}
