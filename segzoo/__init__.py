"""segzoo: SETR, Segmenter and SegFormer in one PyTorch Lightning model zoo."""

from .registry import create_model, get_arch, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "get_arch", "list_models", "__version__"]
