"""segzoo: SETR, Segmenter and SegFormer in one PyTorch Lightning model zoo.

``import segzoo`` imports nothing heavy: each public name is imported on first use (PEP 562), so the torch-free
runtime (``segzoo.runtime``: onnxruntime or OpenVINO, numpy, OpenCV) and the command line's ``--help`` never load
PyTorch. Loading and predicting (``segzoo.load(name).predict(image)``) import torch, timm, OpenCV and
huggingface_hub only; the training layer (``segzoo.training``, ``segzoo.data``: Lightning, albumentations,
torchmetrics, wandb) is imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segzoo._errors import (
    AgreementError,
    AmbiguousArchitectureError,
    ArchitectureNotFoundError,
    BackendUnavailableError,
    CheckpointMismatchError,
    CheckpointReadError,
    CheckpointTableError,
    ConversionError,
    CorruptedFileError,
    DatasetSourceError,
    DatasetTargetError,
    DownloadError,
    ExportError,
    InputSizeError,
    NonFiniteLossError,
    RuntimeModelError,
    SegzooError,
    UnknownCheckpointError,
    UnknownDatasetError,
    UnknownFormatError,
    UnknownModelError,
    UnsafeCheckpointError,
)
from segzoo._lazy import lazy_names
from segzoo._version import __version__

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from segzoo._api import SegmentationModel, create_model, list_models, load
    from segzoo._preprocessing import EvalProtocol
    from segzoo.checkpoints import PretrainedCfg, get_pretrained_cfg, list_pretrained, push_to_hub, save_pretrained
    from segzoo.inference import export_onnx, predict
    from segzoo.models import get_arch

_LAZY = {  # public name -> the module that defines it
    "SegmentationModel": "segzoo._api",
    "create_model": "segzoo._api",
    "list_models": "segzoo._api",
    "load": "segzoo._api",
    "EvalProtocol": "segzoo._preprocessing",
    "ModelConfig": "segzoo._model_config",
    "PretrainedCfg": "segzoo.checkpoints",
    "get_pretrained_cfg": "segzoo.checkpoints",
    "list_pretrained": "segzoo.checkpoints",
    "push_to_hub": "segzoo.checkpoints",
    "save_pretrained": "segzoo.checkpoints",
    "export_onnx": "segzoo.inference",
    "predict": "segzoo.inference",
    "get_arch": "segzoo.models",
}
_SUBPACKAGES = ("checkpoints", "data", "demo", "inference", "models", "runtime", "training")


# Public names that moved: the old name -> (its module, what to use instead). Each still works, with a FutureWarning.
_MOVED = {
    "EncoderDecoder": (
        "segzoo.models",
        "segzoo.SegmentationModel (the model class) or segzoo.models.EncoderDecoder (the network class it extends)",
    ),
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, submodules=_SUBPACKAGES, moved=_MOVED)


__all__ = [
    "AgreementError",
    "AmbiguousArchitectureError",
    "ArchitectureNotFoundError",
    "BackendUnavailableError",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "CheckpointTableError",
    "ConversionError",
    "CorruptedFileError",
    "DatasetSourceError",
    "DatasetTargetError",
    "DownloadError",
    "EvalProtocol",
    "ExportError",
    "InputSizeError",
    "ModelConfig",
    "NonFiniteLossError",
    "PretrainedCfg",
    "RuntimeModelError",
    "SegmentationModel",
    "SegzooError",
    "UnknownCheckpointError",
    "UnknownDatasetError",
    "UnknownFormatError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "__version__",
    "create_model",
    "export_onnx",
    "get_arch",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "load",
    "predict",
    "push_to_hub",
    "save_pretrained",
]
