"""``SegmentationModule``: the LightningModule that trains and evaluates any segzoo model.

One module serves every encoder–decoder pairing: the model comes from the registry by name (or as any ``nn.Module``
given in the config), the optimizer and schedule are injected by LightningCLI, and the papers' per-parameter rules
(head lr ×10, no weight decay on norms and position embeddings, layer-wise decay) are arguments (see
:mod:`segzoo.optim`). Validation and test run in the checkpoint's evaluation mode (whole image or sliding window,
optionally multi-scale + flip) and report mIoU, mean accuracy and pixel accuracy from one confusion matrix, which
torchmetrics sums over processes, so DDP gives the numbers of a single process.
"""

from __future__ import annotations

import contextlib
import faulthandler
import inspect
import os
import pickle
import signal
import socket
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

import segzoo
from segzoo.inference import TTA_SCALES, eval_settings, inference
from segzoo.optim import PolyLR, apply_multipliers, param_groups
from segzoo.visualize import default_palette, denormalize, side_by_side

__all__ = [
    "CheckpointReadError",
    "LastCheckpoint",
    "MaskWriter",
    "SegmentationModule",
    "SigtermWatchdog",
    "StopOnEveryRank",
    "read_checkpoint",
    "segmentation_metrics",
]


def segmentation_metrics(confusion: Tensor) -> dict[str, Tensor]:
    """mIoU, mean accuracy, pixel accuracy and per-class IoU / accuracy from a K×K confusion matrix.

    Rows are ground truth, columns predictions (torchmetrics' layout). As in mmsegmentation, a class's IoU is NaN
    when it appears neither in the ground truth nor in the predictions, its accuracy NaN when it is absent from the
    ground truth, and the means skip NaNs.

    Args:
        confusion: K×K matrix of pixel counts.

    Returns:
        ``miou``, ``macc``, ``acc`` (scalars) and ``iou``, ``class_acc`` (length K).
    """
    confusion = confusion.double()
    intersection = confusion.diag()
    gt_area = confusion.sum(dim=1)
    union = gt_area + confusion.sum(dim=0) - intersection
    iou = intersection / union  # 0/0 = NaN for classes seen nowhere
    class_acc = intersection / gt_area
    total = confusion.sum()
    acc = intersection.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    return {"miou": iou.nanmean(), "macc": class_acc.nanmean(), "acc": acc, "iou": iou, "class_acc": class_acc}


def _build_model(
    model: str | nn.Module | None,
    num_classes: int | None,
    model_args: dict[str, Any],
    init_from: str | None,
    pretrained_encoder: bool,
) -> nn.Module:
    """The network: a given module, a registry architecture, or the weights of a checkpoint (``init_from``)."""
    if isinstance(model, nn.Module):
        if init_from is not None and not str(init_from).endswith(".ckpt"):
            raise ValueError(
                "init_from with a model given as an nn.Module only accepts a Lightning .ckpt file; to start from a "
                "published checkpoint, give the architecture name as `model` (or leave it out) instead"
            )
        net = model
    elif init_from is not None and not str(init_from).endswith(".ckpt"):
        if isinstance(model, str) and Path(init_from).is_file():  # weights file for the named architecture
            net = segzoo.load(model, checkpoint=init_from, num_classes=num_classes, **model_args)
        else:  # checkpoint name, hf-hub: id or saved folder
            net = segzoo.load(init_from, num_classes=num_classes, **model_args)
        loaded_arch = getattr(net, "arch_name", None)
        if model is not None and loaded_arch is not None and model != loaded_arch:
            raise ValueError(
                f"init_from={init_from!r} is a {loaded_arch} checkpoint but model={model!r}; set model to "
                f"{loaded_arch!r} or leave it out"
            )
        return net
    elif model is None:
        raise ValueError("give `model` (an architecture name such as 'segformer-b0', or an nn.Module) or `init_from`")
    else:
        if num_classes is None:
            raise ValueError(
                f"model={model!r} needs num_classes; it is linked from the DataModule's num_classes by train.py, "
                "or set model.num_classes in the config"
            )
        kwargs = dict(model_args)
        if pretrained_encoder:
            kwargs["pretrained_encoder"] = True
        net = segzoo.create_model(model, num_classes=num_classes, **kwargs)
    if init_from is not None:  # a Lightning checkpoint of this module
        _load_lightning_checkpoint(net, init_from)
    return net


def _load_lightning_checkpoint(net: nn.Module, path: str | Path) -> None:
    """Copies ``model.*`` weights from a Lightning checkpoint, skipping class-specific ones whose shapes differ."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint {path} does not exist")
    state = read_checkpoint(path, "init_from").get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointReadError(f"init_from checkpoint {path} has no state_dict: not a Lightning checkpoint")
    state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    own = net.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for key in mismatched:  # a new number of classes: keep the fresh classifier
        del state[key]
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(mismatched):
        raise ValueError(
            f"checkpoint {path} does not match the model: missing {sorted(set(missing) - set(mismatched))[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; was it trained with the same `model`?"
        )


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint); the message names the file."""


def read_checkpoint(path: str | Path, role: str = "checkpoint") -> dict[str, Any]:
    """Loads a Lightning ``.ckpt`` (tensors and plain Python values only: never unpickles code) onto the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointReadError: the file is truncated or corrupt (an interrupted copy or download), or not a checkpoint;
            the message names ``role`` (``--ckpt_path``, ``init_from``) and the file. torch alone says
            ``OSError: [Errno 22] Invalid argument`` without a file name for a truncated one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{role} {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointReadError(
                f"{role} {path} holds Python objects other than tensors and plain values; segzoo does not unpickle "
                f"them (they can run code). Is it a checkpoint written by train.py? ({str(error).splitlines()[0]})"
            ) from error
        raise CheckpointReadError(f"{role} {path} is corrupt or not a checkpoint ({error})") from error
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        size = path.stat().st_size
        raise CheckpointReadError(
            f"{role} {path} ({size} bytes) is truncated or corrupt and cannot be read ({type(error).__name__}: "
            f"{error}); was it copied or downloaded completely? Use another checkpoint, e.g. the run's previous "
            "last.ckpt or a best-mIoU one"
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointReadError(f"{role} {path} is not a Lightning checkpoint (holds a {type(checkpoint).__name__})")
    return checkpoint


class SegmentationModule(L.LightningModule):
    """Trains and evaluates a semantic-segmentation model with the papers' recipes.

    Args:
        model: Registry architecture name (``segformer-b0``, ``setr-pup-l16``, ...; see ``segzoo.list_models()``) or
            an ``nn.Module`` mapping B×3×H×W images to B×K×H×W logits. Can be left out when ``init_from`` names a
            published checkpoint.
        num_classes: Number of classes (linked from the DataModule by ``train.py``).
        ignore_index: Label of pixels excluded from the loss and the metrics.
        model_args: Extra arguments for ``segzoo.create_model`` / ``segzoo.load`` (e.g. ``drop_path_rate``, width
            overrides).
        init_from: Start from these weights: a published checkpoint name (``segformer-b2-ade``), a local checkpoint
            ``segzoo.load`` reads, or a Lightning ``.ckpt`` of this module. Class-specific layers are re-initialised
            when ``num_classes`` differs (fine-tuning).
        pretrained_encoder: Initialise the encoder with its ImageNet weights (the papers' starting point).
        optimizer: Optimizer factory; its ``lr`` and ``weight_decay`` are the base values the group rules scale.
        lr_scheduler: Scheduler factory, stepped every iteration; ``segzoo.optim.PolyLR`` gets ``total_steps`` from
            the trainer (``max_steps``) unless the config sets it.
        head_lr_mult: Lr multiplier for parameters outside the backbone (10 for SegFormer and SETR).
        norm_decay_mult: Weight-decay multiplier for normalisation layers (0 for SegFormer).
        embed_decay_mult: Weight-decay multiplier for position embeddings and tokens (0 for SegFormer).
        layer_decay: Layer-wise lr decay for ViT backbones; None disables it.
        eval_mode: ``"whole"`` or ``"slide"`` for validation, test and predict; defaults to the model's
            ``pretrained_cfg["eval_mode"]``, else whole.
        eval_crop: Sliding-window size; defaults to ``pretrained_cfg["crop_size"]``.
        eval_stride: Sliding-window stride; defaults to ``pretrained_cfg["stride"]``.
        eval_batch_size: Windows per forward pass in slide mode.
        test_tta: Multi-scale (``tta_scales``) + flip test-time augmentation in ``test`` and ``predict``.
        tta_scales: Resize factors for ``test_tta``.
        num_log_images: Validation samples (the first ones) drawn as input / ground truth / prediction panels each
            validation, into ``<log_dir>/val_overlays/epoch=E/`` and to the logger when it takes images.
        class_names: Class names for the per-class table; defaults to the DataModule's, then the model's.
    """

    def __init__(
        self,
        model: str | nn.Module | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        model_args: dict[str, Any] | None = None,
        init_from: str | None = None,
        pretrained_encoder: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable = PolyLR,
        head_lr_mult: float = 1.0,
        norm_decay_mult: float = 1.0,
        embed_decay_mult: float = 1.0,
        layer_decay: float | None = None,
        eval_mode: str | None = None,
        eval_crop: int | tuple[int, int] | None = None,
        eval_stride: int | tuple[int, int] | None = None,
        eval_batch_size: int = 4,
        test_tta: bool = False,
        tta_scales: Sequence[float] = TTA_SCALES,
        num_log_images: int = 4,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(
            ignore=["optimizer", "lr_scheduler"] + (["model"] if isinstance(model, nn.Module) else [])
        )
        self.model = _build_model(model, num_classes, dict(model_args or {}), init_from, pretrained_encoder)
        model_classes = getattr(self.model, "num_classes", None)
        if num_classes is not None and model_classes is not None and model_classes != num_classes:
            raise ValueError(
                f"the model predicts {model_classes} classes but num_classes={num_classes} (from the DataModule); "
                "build the model with the DataModule's number of classes"
            )
        self.num_classes = num_classes or model_classes
        if self.num_classes is None:
            raise ValueError("num_classes is unknown: set model.num_classes (train.py links it from the DataModule)")
        if eval_mode not in (None, "whole", "slide"):
            raise ValueError(f"eval_mode must be 'whole' or 'slide', got {eval_mode!r}")
        self.ignore_index = ignore_index
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.group_rules = {
            "head_lr_mult": head_lr_mult,
            "norm_decay_mult": norm_decay_mult,
            "embed_decay_mult": embed_decay_mult,
            "layer_decay": layer_decay,
        }
        self.eval_mode, self.eval_crop, self.eval_stride = eval_mode, eval_crop, eval_stride
        self.eval_batch_size = eval_batch_size
        self.test_tta = test_tta
        self.tta_scales = tuple(tta_scales)
        self.num_log_images = num_log_images
        self._class_names = class_names
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes, ignore_index=ignore_index)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes, ignore_index=ignore_index)
        self._overlay_samples: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []

    # ------------------------------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------------------------------

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def compute_loss(self, images: Tensor, masks: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of the main logits plus the weighted auxiliary losses (SETR: 0.4 each).

        The cross-entropy averages over the non-ignored pixels (PyTorch's rule; mmseg divides by all pixels). A batch
        without any valid pixel gives a zero loss that still reaches every parameter.
        """
        if hasattr(self.model, "forward_with_aux"):
            logits, aux_logits = self.model.forward_with_aux(images)
            aux_weights = list(getattr(self.model, "aux_weights", [1.0] * len(aux_logits)))
        else:
            logits, aux_logits, aux_weights = self.model(images), [], []
        parts = {"loss_main": self._cross_entropy(logits, masks)}
        for i, (aux, weight) in enumerate(zip(aux_logits, aux_weights)):
            parts[f"loss_aux{i}"] = weight * self._cross_entropy(aux, masks)
        return sum(parts.values()), parts

    def _cross_entropy(self, logits: Tensor, masks: Tensor) -> Tensor:
        if not (masks != self.ignore_index).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), masks, ignore_index=self.ignore_index)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        loss, parts = self.compute_loss(images, masks)
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if len(parts) > 1:
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        groups = param_groups(self.model, **self.group_rules)
        for group in groups:
            group.pop("names")
        optimizer = self.optimizer_factory(groups)
        apply_multipliers(optimizer)
        scheduler_kwargs = {}
        # A PolyLR without total_steps in the config spans the whole run (max_steps, or epochs × batches).
        if _accepts(self.scheduler_factory, "total_steps") and _bound(self.scheduler_factory, "total_steps") is None:
            scheduler_kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **scheduler_kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The weights are in the checkpoint: rebuilding the module from it (load_from_checkpoint) must not fetch the
        # starting weights again.
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None:
            hparams.update(init_from=None, pretrained_encoder=False)

    # ------------------------------------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------------------------------------

    def eval_settings(self) -> dict[str, Any]:
        """Evaluation mode, window and stride: the arguments, else the model's ``pretrained_cfg``, else whole."""
        settings = eval_settings(self.model, self.eval_mode, self.eval_crop, self.eval_stride, self.eval_batch_size)
        return settings | {"scales": self.tta_scales}

    def predict_logits(self, images: Tensor, tta: bool = False) -> Tensor:
        """Logits at the input size in the evaluation mode (with multi-scale + flip when ``tta``)."""
        return inference(self.model, images, self.eval_settings(), tta=tta)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds = self.predict_logits(batch["image"]).argmax(dim=1)
        self.val_confusion.update(preds, batch["mask"])
        self._collect_overlays(batch, preds)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds = self.predict_logits(batch["image"], tta=self.test_tta).argmax(dim=1)
        self.test_confusion.update(preds, batch["mask"])

    def predict_step(self, batch: dict[str, Any] | Tensor, batch_idx: int) -> Tensor:
        """B×H×W label maps (int64) at the batch's image size."""
        images = batch["image"] if isinstance(batch, dict) else batch
        return self.predict_logits(images, tta=self.test_tta).argmax(dim=1)

    def on_validation_epoch_start(self) -> None:
        self._overlay_samples = []

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_confusion)
        if not self.trainer.sanity_checking and self.num_log_images > 0:
            # ``trainer.log_dir`` is a broadcast from rank 0 under DDP: every rank reads it here, outside the rank-0
            # branch, or rank 0 waits in it while the others wait in the next collective (a hang, issue 13).
            folder = self._overlay_folder()
            if self.trainer.is_global_zero:
                self._write_overlays(folder)
            self._overlay_samples = []

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_confusion)

    def _log_metrics(self, stage: str, confusion_metric: MulticlassConfusionMatrix) -> None:
        confusion = confusion_metric.compute()  # summed over all processes
        confusion_metric.reset()
        metrics = segmentation_metrics(confusion)
        # The values are already global and equal on every process; sync_dist averages equal numbers (a no-op) and
        # keeps Lightning from warning about unsynchronised epoch-level logging.
        self.log_dict({f"{stage}/{k}": metrics[k].float() for k in ("miou", "macc", "acc")}, sync_dist=True)
        names = self.class_names()
        per_class = {f"{stage}/iou/{name}": iou.float() for name, iou in zip(names, metrics["iou"])}
        self.log_dict({k: v for k, v in per_class.items() if not v.isnan()}, sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._report_table(stage, names, metrics)

    def _report_table(self, stage: str, names: list[str], metrics: dict[str, Tensor]) -> None:
        """Prints the per-class table and hands it to loggers that take tables (W&B). Runs on rank 0 only: nothing
        in here may be a collective (``trainer.log_dir``, ``self.log(..., sync_dist=True)``, ``compute()``)."""
        from rich.console import Console
        from rich.table import Table

        summary = (
            f"{stage} (epoch {self.current_epoch}, step {self.global_step}): mIoU {100 * metrics['miou']:.2f}  "
            f"mAcc {100 * metrics['macc']:.2f}  aAcc {100 * metrics['acc']:.2f}"
        )
        table = Table(title=f"{stage} per-class IoU / accuracy (%)")
        for column in ("class", "IoU", "Acc"):
            table.add_column(column, justify="left" if column == "class" else "right")
        rows = [[name, _pct(iou), _pct(acc)] for name, iou, acc in zip(names, metrics["iou"], metrics["class_acc"])]
        for row in rows:
            table.add_row(*row)
        console = Console()
        console.print(table)
        console.print(summary)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=f"{stage}/per_class", columns=["class", "IoU", "Acc"], data=rows)

    def class_names(self) -> list[str]:
        names = self._class_names
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if names is None and datamodule is not None:
            names = getattr(datamodule, "class_names", None)
        if names is None:
            names = (getattr(self.model, "pretrained_cfg", None) or {}).get("class_names")
        if names is None or len(names) != self.num_classes:
            names = [f"class_{i}" for i in range(self.num_classes)]
        return list(names)

    def palette(self) -> list[tuple[int, int, int]]:
        datamodule = getattr(self.trainer, "datamodule", None)
        palette = getattr(datamodule, "palette", None)
        if palette is None:
            palette = (getattr(self.model, "pretrained_cfg", None) or {}).get("palette")
        if palette is None or len(palette) < self.num_classes:
            palette = default_palette(self.num_classes)
        return [tuple(int(v) for v in colour) for colour in palette]

    # ------------------------------------------------------------------------------------------------------------------
    # Overlay images
    # ------------------------------------------------------------------------------------------------------------------

    def _collect_overlays(self, batch: dict[str, Any], preds: Tensor) -> None:
        """Keeps the first ``num_log_images`` validation samples of rank 0 (denormalised image, mask, prediction)."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        mean, std = self._normalisation()
        names = batch.get("name") or [f"sample{i}" for i in range(len(preds))]
        for image, mask, pred, name in zip(batch["image"], batch["mask"], preds, names):
            if len(self._overlay_samples) >= self.num_log_images:
                return
            self._overlay_samples.append(
                (denormalize(image, mean, std), mask.cpu().numpy(), pred.cpu().numpy(), str(name))
            )

    def _normalisation(self) -> tuple[Sequence[float], Sequence[float]]:
        """The DataModule's mean/std on the 0–255 scale (0–1 values are scaled up), else ImageNet's."""
        datamodule = getattr(self.trainer, "datamodule", None)
        mean = getattr(datamodule, "mean", None) or (123.675, 116.28, 103.53)
        std = getattr(datamodule, "std", None) or (58.395, 57.12, 57.375)
        if max(mean) <= 1.0 and max(std) <= 1.0:
            mean, std = [m * 255 for m in mean], [s * 255 for s in std]
        return mean, std

    def _overlay_folder(self) -> Path:
        """``<log_dir>/val_overlays/epoch=E``. A collective (``trainer.log_dir`` broadcasts): call it on every rank."""
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(log_dir) / "val_overlays" / f"epoch={self.current_epoch}"

    def _write_overlays(self, folder: Path) -> None:
        """Saves the collected panels into ``folder`` and hands them to the loggers (rank 0 only: no collectives
        in here; the folder comes from :meth:`_overlay_folder`, called on every rank)."""
        if not self._overlay_samples:
            return
        palette = self.palette()
        panels = [
            side_by_side(img, gt, pred, palette, ignore_index=self.ignore_index)
            for img, gt, pred, _ in self._overlay_samples
        ]
        captions = [name for *_, name in self._overlay_samples]
        folder.mkdir(parents=True, exist_ok=True)
        for i, (panel, caption) in enumerate(zip(panels, captions)):
            panel.save(folder / f"{i:02d}_{Path(caption).stem}.png")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/overlays", images=panels, caption=captions, step=self.global_step)
            elif isinstance(logger, TensorBoardLogger):
                for i, panel in enumerate(panels):
                    array = torch.from_numpy(np.asarray(panel)).permute(2, 0, 1)
                    logger.experiment.add_image(f"val/overlay_{i}", array, global_step=self.global_step)
        self._overlay_samples = []


class MaskWriter(BasePredictionWriter):
    """Writes each predicted label map as ``<output_dir>/<name>.png`` (8-bit, class index per pixel, with the
    DataModule's palette so image viewers show colours).

    Use with ``python train.py predict ... --trainer.callbacks+=segzoo.lit.MaskWriter
    --trainer.callbacks.output_dir predictions``.

    Args:
        output_dir: Folder for the PNG files (created if missing).
    """

    def __init__(self, output_dir: str | Path = "predictions"):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        from PIL import Image

        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = batch.get("name") if isinstance(batch, dict) else None
        palette = [v for colour in pl_module.palette()[:256] for v in colour] if pl_module.num_classes <= 256 else None
        for i, labels in enumerate(prediction):
            name = Path(str(names[i])).stem if names is not None else f"batch{batch_idx:05d}_{i:02d}"
            if pl_module.num_classes > 256:
                Image.fromarray(labels.cpu().numpy().astype(np.uint16)).save(self.output_dir / f"{name}.png")
                continue
            image = Image.fromarray(labels.cpu().numpy().astype(np.uint8), mode="P")
            image.putpalette(palette)
            image.save(self.output_dir / f"{name}.png")


class StopOnEveryRank(SIGTERMException):
    """A stop that every rank of a multi-process run raises at the same point (the start of the same training step,
    after agreeing on it; see :class:`SigtermWatchdog`), so collectives after it (saving a checkpoint) still pair up.
    A ``SIGTERMException``: Lightning and ``train.py`` treat it as a SIGTERM stop (exit status 143)."""


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<checkpoints>/last.ckpt`` current, so that a killed or interrupted run resumes with little lost
    (``--ckpt_path .../last.ckpt``).

    ``last.ckpt`` (weights, optimizer, schedule, loop state) is rewritten:

    - every ``every_n_train_steps`` optimizer steps (the recipes set a few minutes of work; 0 or None: never on a step
      count), after each validation and at the end of training;
    - when the run is interrupted, if that can be done safely:

      * one process: on Ctrl-C (``KeyboardInterrupt``) and on SIGTERM (Lightning stops at the next batch);
      * several processes (DDP): on SIGTERM, which :class:`SigtermWatchdog` turns into a stop every rank takes at the
        start of the same training step (:class:`StopOnEveryRank`), where all ranks can enter the save's collectives.
        A Ctrl-C, a SIGTERM during validation and a SIGTERM that the watchdog's grace period cuts short interrupt each
        rank wherever it is: saving then would pair one rank's save with another's gradient reduction (a hang or a
        gloo/NCCL abort), so nothing is written and the previous ``last.ckpt`` (at most ``every_n_train_steps`` old)
        stays the resume point. Stop a multi-GPU run with SIGTERM (``kill <pid of rank 0>``, or the scheduler's)
        rather than Ctrl-C to keep the current step.

    Other exceptions (a crash in the middle of a step) save nothing: the weights may be half-updated. Writes are
    atomic (Lightning writes to a temporary file, then renames it), so a process killed while saving keeps the
    previous ``last.ckpt``. ``train.py`` always adds it (``--last_checkpoint.every_n_train_steps``).

    Args:
        every_n_train_steps: Optimizer steps between two saves of ``last.ckpt``.
        dirpath: Folder of ``last.ckpt``; defaults to ``<log_dir>/checkpoints`` (beside the best-mIoU checkpoints).
    """

    def __init__(self, every_n_train_steps: int | None = 1000, dirpath: str | Path | None = None):
        if every_n_train_steps is not None and (isinstance(every_n_train_steps, bool) or every_n_train_steps < 0):
            raise ValueError(f"every_n_train_steps must be a number of steps >= 0, got {every_n_train_steps!r}")
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps or 0,
            enable_version_counter=False,  # always last.ckpt, never last-v1.ckpt
        )

    @property
    def state_key(self) -> str:
        return "segzoo.LastCheckpoint"  # the same whatever the interval: resuming with another one is fine

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        what = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        if self._should_skip_saving_checkpoint(trainer) or trainer.global_step == 0:
            return  # not fitting, sanity check, nothing trained yet, or last.ckpt is already of this step
        if trainer.world_size > 1 and not isinstance(exception, StopOnEveryRank):
            previous = self.last_model_path or "none yet"
            rank_zero_warn(
                f"{what} stopped the ranks of this {trainer.world_size}-process run at different points, where saving "
                f"a checkpoint could hang or abort; last.ckpt not updated (step {trainer.global_step}). Resume from "
                f"the previous one: {previous}. Stop a multi-process run with SIGTERM to save its current step."
            )
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        rank_zero_info(
            f"{what}: saved {self.last_model_path} at step {trainer.global_step}; resume with "
            f"--ckpt_path {self.last_model_path}"
        )


class SigtermWatchdog(Callback):
    """Makes SIGTERM (a job scheduler's) end a run on every rank, stuck or not, within ``grace_period`` seconds.

    Lightning replaces SIGTERM's default action with a Python handler that sets a flag and forwards the signal to the
    ranks it launched; its loops check the flag between batches and stop with ``SIGTERMException``. Two things defeat
    that under DDP, and this callback fixes both:

    - CPython runs a Python handler only when the main thread returns to the interpreter, so a process blocked in C++
      (a rank waiting in a collective a peer never enters, up to the process group's 30-minute timeout) never sees
      the signal. CPython's C-level handler also writes the signal number to the wakeup file descriptor
      (``signal.set_wakeup_fd``), which a thread here reads: Lightning's orderly stop gets ``grace_period`` seconds;
      then the thread prints every thread's stack to stderr (where the process was stuck), forwards SIGTERM to the
      ranks this process launched and exits with status 143 (128 + SIGTERM), like a process the signal killed.
    - Lightning 2.6's handler itself runs a collective (``dist.broadcast``) wherever the signal interrupts the rank,
      while the other ranks are in some other collective: gloo then aborts ("Received data size doesn't match
      expected size. Is there a distributed collective mismatch?") or the ranks pair the wrong operations. The
      handler installed here runs no collective: it notes the signal and forwards it to the ranks this process
      launched.

    Where the run stops: one process stops at the next batch (Lightning's flag). Several processes in a training
    step stop together: at the start of each training step Lightning shares rank 0's flag with every rank; here that
    exchange takes the maximum over the ranks of "a SIGTERM arrived" instead (the same one collective per step, so a
    SIGTERM to any rank stops them all), and every rank raises :class:`StopOnEveryRank` at that same point, where
    :class:`LastCheckpoint` can save ``last.ckpt`` (its collectives pair up). A SIGTERM during validation stops each
    rank after its current validation batch, as Lightning does, without a checkpoint. The save has to finish within
    the grace period.

    ``train.py`` always adds it (``--sigterm.grace_period``); add it to your own ``Trainer`` the same way. Keep the
    grace period below the scheduler's SIGTERM-to-SIGKILL delay (SLURM and Kubernetes: 30 s by default).

    Args:
        grace_period: Seconds from the SIGTERM to the forced exit.
    """

    def __init__(self, grace_period: float = 20.0):
        super().__init__()
        if not grace_period > 0:
            raise ValueError(f"grace_period must be a positive number of seconds, got {grace_period!r}")
        self.grace_period = float(grace_period)
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._launcher: Any = None
        self._connector: Any = None
        self._epoch_loop: Any = None
        self.received = threading.Event()
        self.stop_requested = False  # a SIGTERM reached this process's handler

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._thread is not None or threading.current_thread() is not threading.main_thread():
            return  # armed already, or not on the main thread (signals are only delivered there)
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # CPython requires a non-blocking wakeup fd
        try:
            self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            reader.close()
            writer.close()
            return
        self._reader, self._writer = reader, writer
        self._launcher = trainer.strategy.launcher
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "_sigterm_notifier_fn"):
            # Lightning registers ``connector._sigterm_notifier_fn`` as its SIGTERM handler once setup is done; this
            # instance attribute takes the method's place for this trainer (removed again in _disarm).
            connector._sigterm_notifier_fn = partial(_flag_sigterm, trainer, connector, self)
            self._connector = connector
            epoch_loop = trainer.fit_loop.epoch_loop
            if hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
                # Lightning calls it at the start of every training step of a multi-process run; this instance
                # attribute takes the method's place (removed again in _disarm).
                epoch_loop._broadcast_sigterm_tensor = partial(_agree_on_stop, trainer, connector, self)
                self._epoch_loop = epoch_loop
        self._thread = threading.Thread(target=self._watch, name="segzoo-sigterm-watchdog", daemon=True)
        self._thread.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._disarm()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._disarm()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """A SIGTERM noted during training but not yet acted on (multi-process runs act at the next training step):
        stop validation at the next batch, as Lightning would."""
        if self.stop_requested and self._connector is not None:
            self._connector.received_sigterm = True

    def _disarm(self) -> None:
        """Restores the previous wakeup fd and stops the thread, unless a SIGTERM is counting down (the process
        still has to end then, whatever it does next)."""
        if self._thread is None or self.received.is_set():
            return
        if self._connector is not None:
            with contextlib.suppress(AttributeError):
                del self._connector._sigterm_notifier_fn  # Lightning's own method again
            self._connector = None
        if self._epoch_loop is not None:
            with contextlib.suppress(AttributeError):
                del self._epoch_loop._broadcast_sigterm_tensor
            self._epoch_loop = None
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
        self._reader.shutdown(socket.SHUT_RDWR)  # ends the thread's recv
        self._thread.join(timeout=5)
        self._reader.close()
        self._writer.close()
        self._thread = self._reader = self._writer = None

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if self._previous_fd not in (None, -1):  # keep feeding whoever had the wakeup fd before
                with contextlib.suppress(OSError):
                    os.write(self._previous_fd, data)
            if signal.SIGTERM in data:
                break
        self.received.set()
        time.sleep(self.grace_period)
        sys.stderr.write(
            f"\nsegzoo: SIGTERM received {self.grace_period:g} s ago and the run has not stopped (blocked outside "
            f"Python, e.g. in a collective another rank never entered); every thread's stack follows, then exit 143.\n"
        )
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        kill = getattr(self._launcher, "kill", None)
        if kill is not None:  # the ranks this process launched (Lightning's subprocess launcher)
            with contextlib.suppress(Exception):
                kill(signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)


def _flag_sigterm(trainer: L.Trainer, connector: Any, watchdog: SigtermWatchdog, signum: int, frame: Any) -> None:
    """Lightning's SIGTERM handler without its collective: forwards the signal to the ranks this process launched
    (once) and notes it. One process, or several outside a training step: sets the flag Lightning's loops check after
    each batch. Several in a training step: :func:`_agree_on_stop` acts on it at the start of the next step, on every
    rank at once (Lightning's own checks of the flag at the end of a step are per rank, at different points)."""
    print(f"[rank: {trainer.global_rank}] Received SIGTERM: {signum}", file=sys.stderr, flush=True)
    if not watchdog.stop_requested and not connector.received_sigterm:
        launcher = trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)
    watchdog.stop_requested = True
    if trainer.world_size == 1 or not trainer.training:
        connector.received_sigterm = True


def _agree_on_stop(trainer: L.Trainer, connector: Any, watchdog: SigtermWatchdog) -> None:
    """Replaces Lightning's per-step broadcast of rank 0's SIGTERM flag: the maximum over every rank (the same one
    collective), and every rank raises :class:`StopOnEveryRank` here when any rank got the signal."""
    import torch.distributed as dist

    noted = watchdog.stop_requested or connector.received_sigterm
    flag = torch.tensor([1 if noted else 0], device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item():
        connector.received_sigterm = True
        raise StopOnEveryRank()


def _factory_class(factory: Any) -> Any:
    """The class a factory builds: the class itself, a ``functools.partial`` of it, or jsonargparse's partial of an
    instantiator whose first bound argument is the class."""
    while isinstance(factory, partial):
        classes = [arg for arg in factory.args if isinstance(arg, type)]
        factory = classes[0] if classes else factory.func
    return factory


def _accepts(factory: Any, name: str) -> bool:
    """Whether the class behind ``factory`` takes the argument ``name``."""
    try:
        return name in inspect.signature(_factory_class(factory)).parameters
    except (TypeError, ValueError):
        return False


def _bound(factory: Any, name: str) -> Any:
    """The value a (nested) ``functools.partial`` binds to keyword ``name``, None when unbound."""
    while isinstance(factory, partial):
        if factory.keywords.get(name) is not None:
            return factory.keywords[name]
        factory = factory.func
    return None


def _pct(value: Tensor) -> str:
    return "-" if value.isnan() else f"{100 * float(value):.2f}"
