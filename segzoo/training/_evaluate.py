"""Scoring a model on a dataset folder as its publisher did: ``segzoo eval`` and ``benchmarks/accuracy.py``.

:func:`evaluate` runs Lightning's test loop with :class:`SegmentationTask`, the loop ``train.py test`` runs, so the
three commands share one scoring path (:func:`segzoo.inference.predict_arrays`, also behind ``predict``):
every image goes through the model's own test pipeline and its prediction, at the image's own size, is compared with
the mask as stored. The metrics are mmsegmentation's ``IoUMetric``'s (aAcc, mIoU, mAcc; per class IoU and Acc), in %;
:meth:`EvalResult.rounded` rounds them to 0.01 as ``Runner.test()`` prints them.

The dataset comes from the model (``pretrained_cfg["dataset"]``, a ``checkpoints.yaml`` key), from the ``.ckpt`` that
``train.py`` wrote (its DataModule, rebuilt with the run's arguments on the folder given), or from ``dataset=``.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch import Tensor, nn
from torch.utils.data import Subset

from segzoo._errors import UnknownDatasetError
from segzoo._preprocessing import EvalProtocol
from segzoo.checkpoints import read_state_dict
from segzoo.training._metrics import segmentation_metrics
from segzoo.training._module import SegmentationTask

__all__ = ["DATAMODULES", "EvalResult", "build_datamodule", "evaluate"]

# checkpoints.yaml dataset key -> (DataModule class path, extra arguments)
DATAMODULES: dict[str, tuple[str, dict[str, Any]]] = {
    "ade20k": ("segzoo.data.ADE20KDataModule", {}),
    "cityscapes": ("segzoo.data.CityscapesDataModule", {}),
    "pascal-context-59": ("segzoo.data.PascalContextDataModule", {"num_classes": 59}),
    "pascal-context-60": ("segzoo.data.PascalContextDataModule", {"num_classes": 60}),
    "coco-stuff-164k": ("segzoo.data.COCOStuffDataModule", {}),
}


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: ``aAcc``, ``mIoU``, ``mAcc`` in %, unrounded.
        per_class: ``(class name, IoU %, Acc %)`` per class (NaN where mmseg's table shows nan).
        confusion: K×K pixel counts (rows ground truth, columns prediction).
        protocol: The test pipeline scored with.
        protocol_source: ``"checkpoint"`` or ``"data"`` (see ``SegmentationTask(eval_protocol_source=...)``).
        dataset: The dataset key or DataModule class scored on.
        images: Images scored.
        seconds: Wall time of the test loop.
    """

    metrics: dict[str, float]
    per_class: list[tuple[str, float, float]]
    confusion: Tensor
    protocol: EvalProtocol
    protocol_source: str
    dataset: str
    images: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def rounded(self) -> dict[str, float]:
        """aAcc, mIoU, mAcc in % rounded to 0.01 as mmsegmentation's ``IoUMetric`` rounds them."""
        return {k: float(np.round(v, 2)) for k, v in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (``segzoo eval --json``)."""
        return {
            "dataset": self.dataset,
            "images": self.images,
            "protocol_source": self.protocol_source,
            "protocol": self.protocol.to_dict(),
            **self.rounded(),
            "unrounded": self.metrics,
            "per_class": [{"class": n, "IoU": _json_float(i), "Acc": _json_float(a)} for n, i, a in self.per_class],
            "confusion": self.confusion.tolist(),
            "seconds": round(self.seconds, 2),
            **self.extra,
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(np.round(value, 2))


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def dataset_of(model: nn.Module) -> str | None:
    """The ``checkpoints.yaml`` dataset key a model's ``pretrained_cfg`` names, if any."""
    return (getattr(model, "pretrained_cfg", None) or {}).get("dataset")


def build_datamodule(
    model: nn.Module,
    data_root: str | Path | None = None,
    dataset: str | None = None,
    checkpoint_path: str | Path | None = None,
    num_workers: int | None = None,
    val_batch_size: int | None = None,
) -> L.LightningDataModule:
    """The DataModule to score ``model`` on: ``dataset`` (a ``checkpoints.yaml`` dataset key) on ``data_root``, else
    the DataModule of the ``train.py`` run that wrote ``checkpoint_path`` (a ``.ckpt``: its class and arguments, on
    ``data_root`` when given, else on the run's own folder), else the model's ``pretrained_cfg["dataset"]`` on
    ``data_root``. ``num_workers`` and ``val_batch_size`` replace the DataModule's.

    Raises:
        UnknownDatasetError: No dataset is known, ``dataset`` is not one segzoo has a DataModule for, or no folder.
    """
    known = ", ".join(DATAMODULES)
    datamodule = None
    if dataset is None and checkpoint_path is not None and str(checkpoint_path).endswith(".ckpt"):
        # LightningCLI (train.py) keeps the DataModule's class path and arguments in the checkpoint
        saved = dict(read_state_dict(checkpoint_path, "--model").get("datamodule_hyper_parameters") or {})
        class_path = saved.pop("_class_path", None)
        saved = {k: v for k, v in saved.items() if not k.startswith("_")}  # LightningCLI's own entries
        if class_path is not None:
            cls = _import(class_path)
            if data_root is not None:
                if "data_root" not in saved:
                    raise UnknownDatasetError(
                        f"{checkpoint_path} was trained on {cls.__name__}, which reads no folder: leave out --data"
                    )
                saved["data_root"] = data_root
            datamodule = cls(**saved)
    if datamodule is None:
        dataset = dataset or dataset_of(model)
        if dataset is None:
            raise UnknownDatasetError(
                f"the model does not say which dataset it was trained on: give it, e.g. --dataset ade20k (one of "
                f"{known})"
            )
        if dataset not in DATAMODULES:
            raise UnknownDatasetError(f"no DataModule for dataset {dataset!r}; known: {known}")
        if data_root is None:
            raise UnknownDatasetError(f"give the folder that holds {dataset} (--data)")
        class_path, extra = DATAMODULES[dataset]
        datamodule = _import(class_path)(data_root, **extra)
    if num_workers is not None:
        datamodule.num_workers = num_workers
    if val_batch_size is not None:
        datamodule.val_batch_size = val_batch_size
    return datamodule


def evaluate(
    model: nn.Module,
    datamodule: L.LightningDataModule,
    *,
    tta: bool = False,
    tta_style: str | None = None,
    tta_scales: tuple[float, ...] | None = None,
    limit: int | None = None,
    accelerator: str = "cpu",
    devices: int | list[int] = 1,
    eval_batch_size: int = 4,
    progress: bool = False,
) -> EvalResult:
    """Scores ``model`` on ``datamodule``'s test split with the test loop of ``train.py test``.

    The model's own test pipeline is used when it carries one (a published checkpoint, a saved folder, a ``.ckpt``),
    else the DataModule's (logged either way).

    Args:
        model: The model (``segzoo.load(...)``).
        datamodule: From :func:`build_datamodule`.
        tta: Multi-scale + flip.
        tta_style: ``"mmseg-0.x"`` or ``"mmseg-1.x"`` instead of the checkpoint's rule.
        tta_scales: The multi-scale ratios (default mmseg's 0.5, 0.75, …, 1.75).
        limit: Score the first ``limit`` images only.
        accelerator: Lightning accelerator (``cpu``, ``gpu``, ``auto``).
        devices: Lightning devices (one process: a count of 1 or a list of one device index).
        eval_batch_size: Windows per forward pass in slide mode.
        progress: Show Lightning's progress bar.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    protocol = EvalProtocol.of(model)
    module = SegmentationTask(
        model,
        num_classes=getattr(model, "num_classes", None) or getattr(datamodule, "num_classes", None),
        ignore_index=getattr(datamodule, "ignore_index", 255),
        test_tta=tta,
        tta_scales=tta_scales or protocol.tta_scales,
        tta_style=tta_style,
        eval_batch_size=eval_batch_size,
        class_names=cfg.get("class_names") or getattr(datamodule, "class_names", None),
        num_log_images=0,
    )
    datamodule.setup("test")
    if limit is not None:
        split = datamodule.datasets["test"]
        datamodule.datasets["test"] = Subset(split, range(min(limit, len(split))))
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    start = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    seconds = time.perf_counter() - start
    confusion = module.confusion_matrices["test"]
    scores = segmentation_metrics(confusion)
    used, source = module.eval_protocol()
    return EvalResult(
        metrics={k: 100 * float(scores[m]) for k, m in (("aAcc", "acc"), ("mIoU", "miou"), ("mAcc", "macc"))},
        per_class=[
            (name, 100 * float(iou), 100 * float(acc))
            for name, iou, acc in zip(module.class_names(), scores["iou"], scores["class_acc"])
        ],
        confusion=confusion,
        protocol=used,
        protocol_source=source,
        dataset=type(datamodule).__name__,
        images=len(datamodule.datasets["test"]),
        seconds=seconds,
    )
