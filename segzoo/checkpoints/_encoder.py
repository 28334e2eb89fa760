"""ImageNet weights for a model's encoder: the papers' starting point (``pretrained_encoder=True``)."""

from __future__ import annotations

import logging

import segzoo.checkpoints._download as hub
from segzoo._errors import ConversionError, UnknownCheckpointError
from segzoo.checkpoints._cache import converted_cached
from segzoo.checkpoints._checkpoint import pos_embed_interp
from segzoo.checkpoints._convert import adapt_to_model
from segzoo.checkpoints._table import get_encoder_cfg
from segzoo.models._encoder_decoder import EncoderDecoder
from segzoo.models.encoders import TimmViTEncoder

log = logging.getLogger("segzoo")


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
    state, _ = converted_cached(path, cfg.format, f"{model.arch_name}-encoder", cache_dir)
    state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    if "backbone.norm.weight" not in model.state_dict():  # SETR's ViT has no final norm
        state = {k: v for k, v in state.items() if not k.startswith("backbone.norm.")}
    state = adapt_to_model(state, model, pos_embed_interp=pos_embed_interp(model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    encoder_missing = [k for k in missing if k.startswith("backbone.")]
    if encoder_missing or unexpected:
        raise ConversionError(
            f"{cfg.name} does not fit the encoder of {model.arch_name}: missing {encoder_missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    log.info("%s: encoder initialised from %s", model.arch_name, cfg.name)
    return model
