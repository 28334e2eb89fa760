"""segzoo: SETR, Segmenter and SegFormer in one PyTorch Lightning model zoo.

Loading and predicting (``segzoo.load(name).predict(image)``) import torch, timm, OpenCV and huggingface_hub only;
the training layer (``segzoo.training``, ``segzoo.data``: Lightning, albumentations, torchmetrics, wandb) is imported
when first used.
"""

from segzoo._api import SegmentationModel, create_model, list_models, load
from segzoo._errors import (
    AmbiguousArchitectureError,
    ArchitectureNotFoundError,
    CheckpointMismatchError,
    CheckpointReadError,
    CheckpointTableError,
    ConversionError,
    CorruptedFileError,
    DatasetSourceError,
    DownloadError,
    ExportError,
    SegzooError,
    UnknownCheckpointError,
    UnknownDatasetError,
    UnknownFormatError,
    UnknownModelError,
    UnsafeCheckpointError,
)
from segzoo._preprocessing import EvalProtocol
from segzoo._version import __version__
from segzoo.checkpoints import PretrainedCfg, get_pretrained_cfg, list_pretrained, push_to_hub, save_pretrained
from segzoo.inference import export_onnx, predict
from segzoo.models import EncoderDecoder, get_arch

__all__ = [
    "AmbiguousArchitectureError",
    "ArchitectureNotFoundError",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "CheckpointTableError",
    "ConversionError",
    "CorruptedFileError",
    "DatasetSourceError",
    "DownloadError",
    "EncoderDecoder",
    "EvalProtocol",
    "ExportError",
    "PretrainedCfg",
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
