"""segzoo: SETR, Segmenter and SegFormer in one PyTorch Lightning model zoo."""

from .inference import predict
from .load import load
from .pretrained import get_pretrained_cfg, list_pretrained
from .registry import create_model, get_arch, list_models

__version__ = "0.1.0"
__all__ = [
    "create_model", "get_arch", "get_pretrained_cfg", "list_models", "list_pretrained", "load", "predict", "__version__",
]
