"""``SegmentationTask``: the LightningModule that trains and evaluates any segzoo model.

One module serves every encoder–decoder pairing: the model comes from the registry by name (or as any ``nn.Module``
given in the config), the optimizer and schedule are injected by LightningCLI, and the per-parameter rules (the
publisher's ``custom_keys``, or head lr ×10, no weight decay on norms and position embeddings, layer-wise decay) are
arguments that each recipe sets (see :mod:`segzoo.training._optim`). A training step whose loss is NaN or infinite
changes no weight: its update is dropped with a warning (on every process together under DDP), and a run stops with
:class:`~segzoo.NonFiniteLossError` after ``MAX_CONSECUTIVE_SKIPS`` such steps in a row.

Validation and test score as the publisher's test loop does (mmsegmentation's ``Runner.test()``): each image, as read,
goes through a test pipeline (:class:`segzoo.EvalProtocol`: keep-ratio resize of the ``uint8`` image, normalisation,
whole image or sliding window, optionally multi-scale + flip with every scale resized from the original), the logits
are resized to the image's own size before the argmax, and the prediction is compared with the mask as stored. This is
:func:`segzoo.inference.predict_arrays`, the path ``predict`` and ``segzoo eval`` take. mIoU, mean accuracy
and pixel accuracy come from one confusion matrix, which torchmetrics sums over processes, so DDP gives the numbers of
a single process (segzoo's DataModules give each process its own images, none twice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from segzoo._datasets import default_palette
from segzoo._errors import NonFiniteLossError
from segzoo._model_config import CHECKPOINT_KEY, ModelConfig
from segzoo._preprocessing import IMAGENET_MEAN, IMAGENET_STD, TTA_SCALES, EvalProtocol
from segzoo.inference import inference, predict_arrays
from segzoo.models import get_arch
from segzoo.training._build import build_network
from segzoo.training._losses import CrossEntropyLoss
from segzoo.training._metrics import class_table_rows, percent, print_class_table, segmentation_metrics
from segzoo.training._optim import PolyLR, _IterationSchedule, apply_multipliers, param_groups
from segzoo.training._panels import ValidationPanels

__all__ = ["EVAL_PROTOCOL_SOURCES", "SegmentationTask"]

# Where validation and test take their test pipeline from (SegmentationTask's ``eval_protocol_source``).
EVAL_PROTOCOL_SOURCES = ("auto", "checkpoint", "data")


class SegmentationTask(L.LightningModule):
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
        loss: The loss of the main and auxiliary logits (``segzoo.training``: ``CrossEntropyLoss`` with class
            weights, ``OhemCrossEntropyLoss``, ``DiceLoss``, ``FocalLoss``, ``LossSum``); default cross-entropy. Its
            ``ignore_index`` is set to this module's.
        optimizer: Optimizer factory; its ``lr`` and ``weight_decay`` are the base values the group rules scale.
        lr_scheduler: Scheduler factory, stepped every iteration; ``segzoo.training.PolyLR`` (mmcv 1.x's rule) and
            ``MMEnginePolyLR`` (mmseg 1.x's) get ``total_steps`` from the trainer (``max_steps``) unless the config
            sets it.
        head_lr_mult: Lr multiplier for parameters outside the backbone that no custom key matches.
        norm_decay_mult: Weight-decay multiplier for normalisation layers that no custom key matches.
        embed_decay_mult: Weight-decay multiplier for position embeddings and tokens that no custom key matches.
        layer_decay: Layer-wise lr decay for ViT backbones; None disables it.
        custom_keys: The publisher's ``paramwise_cfg.custom_keys`` as data, ``{name substring: {lr_mult: x,
            decay_mult: y}}``: a parameter whose name contains keys takes the longest one's multipliers (ties:
            alphabetical), instead of the three rules above (see :func:`segzoo.training.param_groups`).
        eval_mode: ``"whole"`` or ``"slide"`` for validation, test and predict; defaults to the model's
            ``eval_protocol.mode``, else whole.
        eval_crop: Sliding-window size; defaults to the model's ``eval_protocol.crop``.
        eval_stride: Sliding-window stride; defaults to the model's ``eval_protocol.stride``.
        eval_batch_size: Windows per forward pass in slide mode (images of one size per pass in whole mode).
        test_tta: Multi-scale (``tta_scales``) + flip test-time augmentation in ``test`` and ``predict``.
        tta_scales: Resize ratios for ``test_tta``.
        tta_style: How each multi-scale input is sized: ``"mmseg-0.x"`` (ratio × the test scale, what scored the
            published multi-scale numbers) or ``"mmseg-1.x"`` (ratio × the image size, ``tools/test.py --tta``);
            default: the test pipeline's (``eval_protocol.tta_style``, else mmseg-0.x).
        eval_protocol_source: Which test pipeline validation, test and predict use (logged when they start):

            - ``"data"``: the DataModule's (``eval_protocol``: its mean/std, ``eval_scale``, ``size_divisor``) with
              this module's ``eval_mode`` / ``eval_crop`` / ``eval_stride`` (else the model's, else whole);
            - ``"checkpoint"``: the one the weights were published or saved with, all of it (``model.eval_protocol``:
              mean/std, test resize, ``size_divisor``, whole or slide and window; for a ``--ckpt_path`` the
              DataModule and evaluation settings of the run that wrote it);
            - ``"auto"`` (default, also ``None``): ``"checkpoint"`` while the weights are a checkpoint's as loaded
              (``init_from`` a published name, file or folder, or restored by ``--ckpt_path``, before any
              training in this process, with the checkpoint's number of classes), else ``"data"`` (training's
              validation, a model trained here or one without a recorded pipeline).

            ``tta_scales``, ``tta_style`` and ``test_tta`` apply to both.
        num_log_images: Validation images (the first ones) drawn as captioned image / ground truth / prediction
            panels with a legend after each validation (:class:`~segzoo.training.ValidationPanels`, which this module
            adds to the trainer), into ``<log_dir>/val_overlays/epoch=E/`` and to the loggers that take images.
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
        loss: nn.Module | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable = PolyLR,
        head_lr_mult: float = 1.0,
        norm_decay_mult: float = 1.0,
        embed_decay_mult: float = 1.0,
        layer_decay: float | None = None,
        custom_keys: dict[str, dict[str, float]] | None = None,
        eval_mode: str | None = None,
        eval_crop: int | tuple[int, int] | None = None,
        eval_stride: int | tuple[int, int] | None = None,
        eval_batch_size: int = 4,
        test_tta: bool = False,
        tta_scales: Sequence[float] = TTA_SCALES,
        num_log_images: int = 4,
        class_names: list[str] | None = None,
        tta_style: str | None = None,
        eval_protocol_source: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(
            # modules are not hyperparameters: checkpoints hold plain values only (read with weights_only=True)
            ignore=["optimizer", "lr_scheduler", "loss"] + (["model"] if isinstance(model, nn.Module) else [])
        )
        # the network, and the test pipeline its weights came with while they are that checkpoint's
        # (see eval_protocol_source)
        self.model, self._checkpoint_protocol = build_network(
            model, num_classes, dict(model_args or {}), init_from, pretrained_encoder
        )
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
        if eval_protocol_source not in (None, *EVAL_PROTOCOL_SOURCES):
            raise ValueError(
                f"eval_protocol_source must be one of {EVAL_PROTOCOL_SOURCES}, got {eval_protocol_source!r}"
            )
        self.ignore_index = ignore_index
        self.loss = loss if loss is not None else CrossEntropyLoss()
        self.loss.ignore_index = ignore_index
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.group_rules = {
            "head_lr_mult": head_lr_mult,
            "norm_decay_mult": norm_decay_mult,
            "embed_decay_mult": embed_decay_mult,
            "layer_decay": layer_decay,
            "custom_keys": custom_keys,
        }
        param_groups(self.model, **self.group_rules)  # bad custom_keys or layer_decay: say so now, not at step 0
        self.skipped_steps = 0  # training steps skipped for a NaN or infinite loss
        self._consecutive_skips = 0
        self._drop_update = False
        self.eval_mode, self.eval_crop, self.eval_stride = eval_mode, eval_crop, eval_stride
        self.eval_batch_size = eval_batch_size
        self.test_tta = test_tta
        self.tta_scales = tuple(tta_scales)
        self.tta_style = tta_style
        self.eval_protocol_source = eval_protocol_source or "auto"
        self.num_log_images = num_log_images
        self._class_names = class_names
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes, ignore_index=ignore_index)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes, ignore_index=ignore_index)
        self.confusion_matrices: dict[str, Tensor] = {}  # the last one of each stage, summed over processes
        self._scoring: tuple[EvalProtocol, str] | None = None
        self._logged: dict[str, tuple[EvalProtocol, str]] = {}
        self._fit_started = False

    # ------------------------------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------------------------------

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    # A run whose loss is NaN or infinite this many steps in a row stops: skipping cannot help it any more.
    MAX_CONSECUTIVE_SKIPS = 100

    def compute_loss(self, images: Tensor, masks: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of the main logits plus the weighted auxiliary losses (SETR: 0.4 each, mmseg's ``loss_weight``),
        each the module's ``loss`` on logits at the labels' size.

        The default loss is ``CrossEntropyLoss()``, the mean over the labelled pixels; the paper recipes set
        ``CrossEntropyLoss(average_over="all")``, mmseg's division by every pixel of the batch. A batch without any
        labelled pixel gives a zero loss that still reaches every parameter.
        """
        if hasattr(self.model, "forward_with_aux"):
            logits, aux_logits = self.model.forward_with_aux(images)
            aux_weights = list(getattr(self.model, "aux_weights", [1.0] * len(aux_logits)))
        else:
            logits, aux_logits, aux_weights = self.model(images), [], []
        parts = {"loss_main": self.loss(logits, masks)}
        for i, (aux, weight) in enumerate(zip(aux_logits, aux_weights)):
            parts[f"loss_aux{i}"] = weight * self.loss(aux, masks)
        return sum(parts.values()), parts

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        loss, parts = self.compute_loss(images, masks)
        if not self._all_finite(loss):
            self._skip_update(loss, parts)
            return loss  # every process still runs the backward pass (DDP waits for it); the update is dropped
        self._consecutive_skips = 0
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if len(parts) > 1:
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch_size)
        return loss

    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite on every process (one all-reduced flag under DDP, so that all processes drop
        the same updates: their gradients are averaged, so a NaN on one reaches all)."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if self._trainer is not None:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        return finite

    def _skip_update(self, loss: Tensor, parts: dict[str, Tensor]) -> None:
        """Marks this step's update to be dropped (:meth:`on_before_optimizer_step`); warns, counts, and stops the run
        after ``MAX_CONSECUTIVE_SKIPS`` in a row."""
        self._drop_update = True
        self.skipped_steps += 1
        self._consecutive_skips += 1
        values = ", ".join(f"{name} {float(value):.4g}" for name, value in parts.items())
        step = self.trainer.global_step if self._trainer is not None else None
        if self._consecutive_skips >= self.MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(
                f"the loss was NaN or infinite for {self._consecutive_skips} steps in a row (now at step {step}: "
                f"{values}); the weights have not changed since. Lower the learning rate, check the data (NaN in "
                "the images, class weights) and the loss settings, then resume from the last checkpoint"
            )
        rank_zero_warn(
            f"step {step}: the loss is NaN or infinite (here {float(loss)}: {values}); this step is skipped (no "
            f"weight update). {self.skipped_steps} step(s) skipped so far"
        )
        if self._trainer is not None:
            self.log("train/skipped_steps", float(self.skipped_steps), batch_size=1, sync_dist=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drops the update of a step whose loss was not finite: without gradients, torch's optimizers leave every
        parameter, momentum and Adam moment as it was (mixed precision's GradScaler skips such a step itself)."""
        if self._drop_update:
            self._drop_update = False
            if getattr(self.trainer.precision_plugin, "scaler", None) is None:
                optimizer.zero_grad(set_to_none=True)

    def configure_optimizers(self) -> dict[str, Any]:
        groups = param_groups(self.model, **self.group_rules)
        for group in groups:
            group.pop("names")
        optimizer = self.optimizer_factory(groups)
        apply_multipliers(optimizer)
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, _IterationSchedule) and scheduler.total_steps is None:  # spans the whole run
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The weights are in the checkpoint: rebuilding the module from it (load_from_checkpoint, --ckpt_path,
        # segzoo.load) must not fetch the starting weights again, but must build the same network, including what
        # the starting weights decided (the architecture of an init_from checkpoint, a patch embedding without bias,
        # dropped auxiliary heads).
        protocol = self._recorded_protocol()
        if protocol is not None:  # the test pipeline segzoo.load and --ckpt_path score these weights with
            checkpoint["eval_protocol"] = protocol.to_dict()
        # the saved-model config, in the shape config.json and the ONNX metadata hold it too; eval_protocol above
        # stays for segzoo versions that read only that
        checkpoint[CHECKPOINT_KEY] = self.model_config(protocol).to_dict()
        hparams = checkpoint.get("hyper_parameters")
        if hparams is None:
            return
        hparams.update(init_from=None, pretrained_encoder=False)
        arch = getattr(self.model, "arch_name", None)
        if isinstance(arch, str) and "model" in hparams:  # not a module given as an object (not a hyperparameter)
            hparams["model"] = arch
            hparams["model_args"] = {**(hparams.get("model_args") or {}), **self._network_args()}

    def model_config(self, protocol: EvalProtocol | None = None) -> ModelConfig:
        """The network's saved-model config, as a checkpoint records it (``segzoo_config``): the architecture and
        the arguments that rebuild it, and a ``pretrained_cfg`` of what this run knows: the classes' names and
        colours, and ``protocol``, the test pipeline its weights are scored with. The starting checkpoint's other
        fields (its name, scores, licence) describe other weights and are left out."""
        config = ModelConfig.of(self.model)
        cfg: dict[str, Any] = {"num_classes": self.num_classes, "class_names": self._known_class_names()}
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        palette = getattr(datamodule, "palette", None)
        if palette is not None and len(palette) >= self.num_classes:
            cfg["palette"] = [[int(v) for v in colour] for colour in palette]
        if protocol is not None:
            cfg |= {"mean": list(protocol.mean), "std": list(protocol.std), "eval": protocol.to_dict()}
        args = self._network_args() if config.architecture else config.model_args
        return dataclasses.replace(config, num_classes=self.num_classes, model_args=args, pretrained_cfg=cfg)

    def _known_class_names(self) -> list[str] | None:
        """The classes' names given to this module, else the DataModule's, else the model's; ``None`` when none of
        them names every class."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for names in (
            self._class_names,
            getattr(datamodule, "class_names", None),
            (getattr(self.model, "pretrained_cfg", None) or {}).get("class_names"),
        ):
            if names is not None and len(names) == self.num_classes:
                return [str(name) for name in names]
        return None

    def _recorded_protocol(self) -> EvalProtocol | None:
        """The test pipeline a checkpoint of this module records: the one validation scored with (else the one it
        would score with now); None when neither a DataModule nor the starting checkpoint says (plain dataloaders)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None and self._checkpoint_protocol is None:
            return None
        return (self._scoring or self.eval_protocol())[0]

    def _network_args(self) -> dict[str, Any]:
        """The ``create_model`` arguments that rebuild this network (its build arguments, and ``aux_heads=False``
        when its auxiliary heads were dropped)."""
        args = dict(getattr(self.model, "build_args", None) or {})
        dropped = not len(getattr(self.model, "auxiliary_head", []))
        if dropped and get_arch(self.model.arch_name).aux_heads:
            args["aux_heads"] = False
        return args

    # ------------------------------------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------------------------------------

    def eval_protocol(self) -> tuple[EvalProtocol, str]:
        """The test pipeline validation, test and predict score with, and where it comes from ("checkpoint" or
        "data"; see ``eval_protocol_source``)."""
        source = self.eval_protocol_source
        if source == "checkpoint" and self._checkpoint_protocol is None:
            raise ValueError(
                "eval_protocol_source='checkpoint', but these weights carry no test pipeline (a model built from the "
                "registry or a bare weights file); use eval_protocol_source='data' (the DataModule's) or load a "
                "published checkpoint by name"
            )
        fit_done = self._fit_started
        if source == "checkpoint" or (source == "auto" and self._checkpoint_protocol is not None and not fit_done):
            protocol, origin = self._checkpoint_protocol, "checkpoint"
        else:  # the data's pipeline, in the module's mode and window (else the model's, else whole)
            window = self._model_window()
            protocol = dataclasses.replace(
                self._data_protocol(), mode=window.mode, crop=window.crop, stride=window.stride,
                tta_style=window.tta_style,
            )  # fmt: skip
            origin = "data"
        tta_style = self.tta_style or protocol.tta_style
        return dataclasses.replace(protocol, tta_scales=self.tta_scales, tta_style=tta_style), origin

    def _model_window(self) -> EvalProtocol:
        """The model's test pipeline in this module's ``eval_mode`` / ``eval_crop`` / ``eval_stride`` where given."""
        return EvalProtocol.of(self.model).with_window(self.eval_mode, self.eval_crop, self.eval_stride)

    def _data_protocol(self) -> EvalProtocol:
        """The DataModule's test pipeline (``eval_protocol``); for DataModules without one, its mean/std (else
        ImageNet's) and no resize."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        protocol = getattr(datamodule, "eval_protocol", None)
        if isinstance(protocol, EvalProtocol):
            return protocol
        mean, std = self.data_statistics()
        return EvalProtocol(mean=tuple(mean), std=tuple(std))

    def on_fit_start(self) -> None:
        self._fit_started = True  # from now on the weights are what these data train, not the checkpoint's

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # --ckpt_path: the weights are the checkpoint's; score them with the pipeline that run validated with.
        self._checkpoint_protocol = ModelConfig.from_checkpoint(checkpoint).eval_protocol

    def _start_scoring(self, stage: str) -> None:
        """Resolves the test pipeline of this validation / test / predict run and logs it when it changes."""
        self._scoring = self.eval_protocol()
        if self._logged.get(stage) != self._scoring:
            self._logged[stage] = self._scoring
            rank_zero_info(_describe_protocol(stage, *self._scoring, self._data_protocol()))

    def on_validation_start(self) -> None:
        self._start_scoring("validation")

    def on_test_start(self) -> None:
        self._start_scoring("test")

    def on_predict_start(self) -> None:
        self._start_scoring("predict")

    def predict_logits(self, images: Tensor, tta: bool = False) -> Tensor:
        """Logits at the input size of already normalised B×3×H×W images, in the evaluation mode (with
        multi-scale + flip of the batch itself when ``tta``): the path of DataModules that preprocess their
        evaluation images; segzoo's score the original images (:meth:`predict_labels`)."""
        protocol = dataclasses.replace(self._model_window(), tta_scales=self.tta_scales)
        return inference(self.model, images, protocol, tta=tta, batch_size=self.eval_batch_size)

    def predict_labels(self, images: Any, tta: bool = False) -> list[Tensor] | Tensor:
        """Label maps of a batch's ``image``: at each image's own size through the test pipeline for original images
        (a list of H×W×3 ``uint8`` arrays or tensors, or a B×H×W×3 ``uint8`` tensor; a list of int64 H×W tensors
        back), at the input size for normalised B×3×H×W tensors (a B×H×W tensor back)."""
        if not _are_original_images(images):
            return self.predict_logits(images, tta=tta).argmax(dim=1)
        protocol, _ = self._scoring or self.eval_protocol()
        arrays = [image.cpu().numpy() if isinstance(image, Tensor) else np.asarray(image) for image in images]
        return predict_arrays(self.model, arrays, protocol, tta=tta, batch_size=self.eval_batch_size)

    def _update(self, confusion: MulticlassConfusionMatrix, preds: list[Tensor] | Tensor, masks: Any) -> None:
        for pred, mask in zip(preds, masks):  # one image at a time: sizes may differ
            confusion.update(pred[None], mask.to(pred.device)[None])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> list[Tensor] | Tensor:
        """Scores the batch; returns its label maps (what :class:`ValidationPanels` draws)."""
        preds = self.predict_labels(batch["image"])
        self._update(self.val_confusion, preds, batch["mask"])
        return preds

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._update(self.test_confusion, self.predict_labels(batch["image"], tta=self.test_tta), batch["mask"])

    def predict_step(self, batch: dict[str, Any] | Tensor, batch_idx: int) -> list[Tensor] | Tensor:
        """Label maps (int64): a list at each original image's size, or B×H×W for normalised tensors."""
        images = batch["image"] if isinstance(batch, dict) else batch
        return self.predict_labels(images, tta=self.test_tta)

    def configure_callbacks(self) -> list[Callback]:
        """The validation panels of ``num_log_images`` images (:class:`ValidationPanels`)."""
        return [ValidationPanels(self.num_log_images)] if self.num_log_images > 0 else []

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_confusion)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_confusion)

    def _log_metrics(self, stage: str, confusion_metric: MulticlassConfusionMatrix) -> None:
        confusion = confusion_metric.compute()  # summed over all processes
        with torch.inference_mode(False):  # a fresh state made in inference mode could not be updated by fit later
            confusion_metric.reset()
        self.confusion_matrices[stage] = confusion.cpu()
        metrics = segmentation_metrics(confusion)
        # The values are already global and equal on every process; sync_dist averages equal numbers (a no-op) and
        # keeps Lightning from warning about unsynchronised epoch-level logging.
        self.log_dict({f"{stage}/{k}": metrics[k].float() for k in ("miou", "macc", "acc")}, sync_dist=True)
        names = self.class_names()
        per_class = {f"{stage}/iou/{name}": iou.float() for name, iou in zip(names, metrics["iou"])}
        self.log_dict({k: v for k, v in per_class.items() if not v.isnan()}, sync_dist=True)
        if self.num_classes == 2:  # binary segmentation (background 0, foreground 1): the foreground's IoU
            self.log(f"{stage}/iou_foreground", metrics["iou"][1].float(), sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._report_table(stage, names, metrics)

    def _report_table(self, stage: str, names: list[str], metrics: dict[str, Tensor]) -> None:
        """Prints the per-class table and hands it to loggers that take tables (W&B). Runs on rank 0 only: nothing
        in here may be a collective (``trainer.log_dir``, ``self.log(..., sync_dist=True)``, ``compute()``)."""
        summary = (
            f"{stage} (epoch {self.current_epoch}, step {self.global_step}): mIoU {percent(metrics['miou'])}  "
            f"mAcc {percent(metrics['macc'])}  aAcc {percent(metrics['acc'])}"
        )
        rows = class_table_rows(names, metrics)
        print_class_table(f"{stage} per-class IoU / accuracy (%)", summary, rows)
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

    def data_statistics(self) -> tuple[Sequence[float], Sequence[float]]:
        """The DataModule's mean/std on the 0–255 scale (0–1 values are scaled up), else ImageNet's."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        mean = getattr(datamodule, "mean", None) or IMAGENET_MEAN
        std = getattr(datamodule, "std", None) or IMAGENET_STD
        if max(mean) <= 1.0 and max(std) <= 1.0:
            mean, std = [m * 255 for m in mean], [s * 255 for s in std]
        return mean, std


def _are_original_images(images: Any) -> bool:
    """Whether a batch's ``image`` holds images as read (H×W×3 ``uint8``: a list, or a B×H×W×3 tensor) rather than
    normalised B×3×H×W float tensors."""
    if isinstance(images, Tensor):
        return images.dtype == torch.uint8 and images.ndim == 4 and images.shape[-1] == 3
    return isinstance(images, (list, tuple)) and all(
        (isinstance(image, np.ndarray) or isinstance(image, Tensor) and image.dtype == torch.uint8)
        and image.ndim == 3
        and image.shape[-1] == 3
        for image in images
    )


def _describe_protocol(stage: str, protocol: EvalProtocol, origin: str, data: EvalProtocol) -> str:
    """The log line that says which test pipeline a validation / test run scores with."""
    values = protocol.to_dict()
    if protocol.mode == "whole":
        values = {k: v for k, v in values.items() if k not in ("crop", "stride")}
    shown = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in values.items())
    owner = {"checkpoint": "checkpoint", "data": "DataModule"}[origin]
    line = f"{stage}: scored at each image's own size with the {owner}'s test pipeline: {shown}"
    if origin == "checkpoint":
        differs = (data.mean, data.std, data.test_scale, data.size_divisor) != (
            protocol.mean,
            protocol.std,
            protocol.test_scale,
            protocol.size_divisor,
        )
        if differs:
            line += (
                f" (not the DataModule's mean={data.mean}, std={data.std}, test_scale={data.test_scale}, "
                f"size_divisor={data.size_divisor}: --model.eval_protocol_source data uses that)"
            )
    return line
