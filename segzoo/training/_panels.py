"""Validation panels a person wants to look at: :class:`ValidationPanels`, the Lightning callback that draws the
first validation images with their ground truth and prediction after each validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from segzoo.inference._visualize import denormalize, validation_panel

__all__ = ["ValidationPanels"]


class ValidationPanels(Callback):
    """After each validation, draws the first ``num_images`` validation images of rank 0 as panels: the image, its
    ground truth and the prediction at ``height`` pixels, titled with the image's name, the epoch and the step, with a
    legend of the classes present in their colours (ignored ground-truth pixels black). They are written to
    ``<log_dir>/val_overlays/epoch=E/NN_<name>.png`` and given to the loggers that take images (W&B's
    ``log_image`` under ``val/panels``, TensorBoard's ``add_image``).

    :class:`~segzoo.training.SegmentationTask` adds one (its ``num_log_images``; ``configure_callbacks``); the
    prediction is what its ``validation_step`` returns, the class names and colours its ``class_names()`` and
    ``palette()``.

    Args:
        num_images: How many validation images to draw.
        height: Height of each of the three pictures in a panel, in pixels (small images are scaled up to it).
    """

    def __init__(self, num_images: int = 4, height: int = 320):
        super().__init__()
        if num_images < 0 or height < 16:
            raise ValueError(f"num_images must be >= 0 and height >= 16, got {num_images} and {height}")
        self.num_images = num_images
        self.height = height
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._samples = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keeps (image, mask, prediction, name) of the first images of rank 0."""
        if trainer.sanity_checking or not trainer.is_global_zero or len(self._samples) >= self.num_images:
            return
        if outputs is None or not isinstance(batch, dict) or "mask" not in batch:
            return
        images = batch["image"]
        normalised = isinstance(images, Tensor) and images.is_floating_point() and images.ndim == 4
        mean, std = pl_module.data_statistics() if normalised else (None, None)
        names = batch.get("name") or [f"sample{batch_idx:03d}_{i}" for i in range(len(outputs))]
        for image, mask, pred, name in zip(images, batch["mask"], outputs, names):
            if len(self._samples) >= self.num_images:
                return
            rgb = denormalize(image, mean, std) if normalised else np.asarray(_cpu(image))
            self._samples.append((rgb, np.asarray(_cpu(mask)), np.asarray(_cpu(pred)), str(name)))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.num_images == 0:
            return
        # ``trainer.log_dir`` is a broadcast from rank 0 under DDP: every rank reads it here, outside the rank-0
        # branch, or rank 0 waits in it while the others wait in the next collective (a hang).
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "val_overlays" / f"epoch={trainer.current_epoch}"
        if trainer.is_global_zero and self._samples:
            self._write(trainer, pl_module, folder)
        self._samples = []

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, folder: Path) -> None:
        """Draws the panels into ``folder`` and hands them to the loggers (rank 0 only: no collective in here)."""
        palette, names = pl_module.palette(), pl_module.class_names()
        ignore_index = getattr(pl_module, "ignore_index", 255)
        when = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        panels = [
            validation_panel(rgb, gt, pred, palette, names, f"{name}  ({when})", ignore_index, self.height)
            for rgb, gt, pred, name in self._samples
        ]
        captions = [name for *_, name in self._samples]
        folder.mkdir(parents=True, exist_ok=True)
        for i, (panel, name) in enumerate(zip(panels, captions)):
            panel.save(folder / f"{i:02d}_{Path(name).stem}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/panels", images=panels, caption=captions, step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                for i, panel in enumerate(panels):
                    array = torch.from_numpy(np.asarray(panel)).permute(2, 0, 1)
                    logger.experiment.add_image(f"val/panel_{i}", array, global_step=trainer.global_step)


def _cpu(value: Any) -> Any:
    return value.cpu() if isinstance(value, Tensor) else value
