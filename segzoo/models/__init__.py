"""Encoders, necks and heads (torch + timm only)."""

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
