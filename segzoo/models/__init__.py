"""Layer 1, the networks (torch + timm only): encoders, necks and heads, one file per family, the registry of
architectures (rows of plain data), and :class:`EncoderDecoder`, whose ``from_arch`` turns a row into a model."""

import sys


def _import_timm_without_wandb() -> None:
    """``import timm`` imports wandb whenever it is installed (``timm.utils.summary``, for timm's own training
    scripts), which costs loading and predicting a third of a second and the training stack's memory. Hide wandb
    while timm is first imported; a later ``import wandb`` (Lightning's WandbLogger) works as usual."""
    if "timm" in sys.modules or "wandb" in sys.modules:
        return
    sys.modules["wandb"] = None  # makes `import wandb` raise ImportError, which timm catches
    try:
        import timm  # noqa: F401
    finally:
        del sys.modules["wandb"]


_import_timm_without_wandb()

from segzoo.models._encoder_decoder import EncoderDecoder  # noqa: E402  (after timm is imported without wandb)
from segzoo.models._registry import ARCHS, Arch, get_arch, list_models  # noqa: E402
from segzoo.models.encoders import KNOWN_TIMM_ENCODERS  # noqa: E402

build_model = EncoderDecoder.from_arch  # the layer's function form: build_model(name, ...) is the classmethod

__all__ = ["ARCHS", "KNOWN_TIMM_ENCODERS", "Arch", "EncoderDecoder", "build_model", "get_arch", "list_models"]
