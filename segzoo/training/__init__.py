"""Layer 4, training (Lightning, torchmetrics, wandb): the LightningModule every architecture trains with, its
losses, callbacks, the papers' optimiser rules and schedule, and the LightningCLI behind ``segzoo train``. The
DataModules are in :mod:`segzoo.data`."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would otherwise look for updates online

from segzoo.training._callbacks import LastCheckpoint, MaskWriter, SigtermWatchdog, StopOnEveryRank  # noqa: E402
from segzoo.training._cli import SegzooCLI, cli_main, main, trainer_defaults  # noqa: E402
from segzoo.training._evaluate import EvalResult, build_datamodule, evaluate  # noqa: E402
from segzoo.training._losses import (  # noqa: E402
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LossSum,
    OhemCrossEntropyLoss,
)
from segzoo.training._module import SegmentationModule, read_checkpoint, segmentation_metrics  # noqa: E402
from segzoo.training._optim import (  # noqa: E402
    MMEnginePolyLR,
    PolyLR,
    apply_multipliers,
    mmengine_poly_lr,
    param_groups,
    poly_warmup_lr,
)

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
    "SegmentationModule",
    "SegzooCLI",
    "SigtermWatchdog",
    "StopOnEveryRank",
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
