"""Layer 2, checkpoints: the table (``checkpoints.yaml``), foreign formats and their converters, download, loading
and publishing. Imports the models layer only."""

from segzoo.checkpoints._convert import CONVERTERS, detect_format
from segzoo.checkpoints._download import download_file, read_state_dict, snapshot
from segzoo.checkpoints._load import load_encoder_weights, replace_classes
from segzoo.checkpoints._publish import model_config, push_to_hub, save_pretrained
from segzoo.checkpoints._table import PretrainedCfg, get_encoder_cfg, get_pretrained_cfg, list_pretrained

__all__ = [
    "CONVERTERS",
    "PretrainedCfg",
    "detect_format",
    "download_file",
    "get_encoder_cfg",
    "get_pretrained_cfg",
    "list_pretrained",
    "load_encoder_weights",
    "model_config",
    "push_to_hub",
    "read_state_dict",
    "replace_classes",
    "save_pretrained",
    "snapshot",
]
