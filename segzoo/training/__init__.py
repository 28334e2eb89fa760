"""Layer 4, training (Lightning, torchmetrics, wandb): the LightningModule every architecture trains with
(:class:`SegmentationTask`), its losses, callbacks, the papers' optimiser rules and schedule, and the LightningCLI
behind ``segzoo train``. The DataModules are in :mod:`segzoo.data`."""

import os
import warnings
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would otherwise look for updates online

from segzoo.checkpoints import read_state_dict as read_checkpoint  # noqa: E402  (the one reader of .ckpt files)
from segzoo.training._callbacks import (  # noqa: E402
    LastCheckpoint,
    MaskWriter,
    SigtermWatchdog,
    StepProgressBar,
    StopOnEveryRank,
)
from segzoo.training._cli import SegzooCLI, cli_main, main, trainer_defaults  # noqa: E402
from segzoo.training._evaluate import EvalResult, build_datamodule, evaluate  # noqa: E402
from segzoo.training._losses import (  # noqa: E402
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LossSum,
    OhemCrossEntropyLoss,
)
from segzoo.training._metrics import segmentation_metrics  # noqa: E402
from segzoo.training._module import SegmentationTask  # noqa: E402
from segzoo.training._optim import (  # noqa: E402
    MMEnginePolyLR,
    PolyLR,
    apply_multipliers,
    mmengine_poly_lr,
    param_groups,
    poly_warmup_lr,
)
from segzoo.training._panels import ValidationPanels  # noqa: E402

_RENAMED = {"SegmentationModule": "SegmentationTask"}  # old public name -> new one


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(
            f"segzoo.training.{name} is now segzoo.training.{_RENAMED[name]} (segzoo.SegmentationModel is the model, "
            f"{_RENAMED[name]} the LightningModule that trains it); the old name will be removed",
            FutureWarning,
            stacklevel=2,
        )
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'segzoo.training' has no attribute {name!r}")


__all__ = [
    "CrossEntropyLoss",
    "DiceLoss",
    "EvalResult",
    "FocalLoss",
    "LossSum",
    "OhemCrossEntropyLoss",
    "LastCheckpoint",
    "MMEnginePolyLR",
    "MaskWriter",
    "PolyLR",
    "SegmentationTask",
    "SegzooCLI",
    "SigtermWatchdog",
    "StepProgressBar",
    "StopOnEveryRank",
    "ValidationPanels",
    "apply_multipliers",
    "build_datamodule",
    "cli_main",
    "evaluate",
    "main",
    "mmengine_poly_lr",
    "param_groups",
    "poly_warmup_lr",
    "read_checkpoint",
    "segmentation_metrics",
    "trainer_defaults",
]
