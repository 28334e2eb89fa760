"""Another number of classes for a model (fine-tuning on a new dataset): every weight kept but the class-specific
ones, which keep a fresh initialisation. The one head swap, behind ``segzoo.load(name, num_classes=N)`` and the
training module's ``init_from``."""

from __future__ import annotations

import logging

import torch
from torch import nn

from segzoo._errors import ConversionError
from segzoo.models._encoder_decoder import EncoderDecoder

log = logging.getLogger("segzoo")


def replace_classes(model: EncoderDecoder, num_classes: int) -> EncoderDecoder:
    """A copy of ``model`` (of its class) for ``num_classes`` classes: every weight kept but the class-specific ones,
    which are freshly initialised."""
    fresh = type(model).from_arch(
        model.arch_name, num_classes=num_classes, aux_heads=len(model.auxiliary_head) > 0, **model.build_args
    )
    reinitialised = load_except_classes(fresh, model.state_dict(), model.arch_name)
    fresh.pretrained_cfg = dict(model.pretrained_cfg, num_classes=num_classes, class_names=None, palette=None)
    log.warning(
        "%s: re-initialised the %d-class layers (%s) for %d classes; all other weights kept",
        model.arch_name,
        model.num_classes,
        ", ".join(sorted({k.rsplit(".", 1)[0] for k in reinitialised})),
        num_classes,
    )
    return fresh


def load_except_classes(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Loads ``state`` into ``model``, but for the weights whose shapes differ: those of the classes, when the two
    have different numbers of classes, which keep the model's fresh initialisation. Returns their names.

    Raises:
        ConversionError: A key is missing or unexpected, or a weight that is not class-specific (segzoo models list
            theirs) has another shape: ``state`` is not of this network.
    """
    own = model.state_dict()
    different = [key for key, value in state.items() if key in own and own[key].shape != value.shape]
    if hasattr(model, "class_specific_parameters"):
        structural = sorted(set(different) - set(model.class_specific_parameters()))
        if structural:
            raise ConversionError(
                f"{source} does not match the model: other shapes for {structural[:5]}, which do "
                "not depend on the number of classes; was it trained with the same architecture?"
            )
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in different}, strict=False)
    if unexpected or set(missing) - set(different):
        raise ConversionError(
            f"{source} does not match the model: missing {sorted(set(missing) - set(different))[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}; was it trained with the same architecture?"
        )
    return different
