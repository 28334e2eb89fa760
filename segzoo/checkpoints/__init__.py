"""Layer 2, checkpoints: the table (``checkpoints.yaml``), foreign formats and their converters, download, reading
checkpoints of every kind into a :class:`Checkpoint` (:func:`resolve`), class and encoder surgery, and publishing.
Imports the models layer only: it reads weights and fills models given to it, and never needs to know their class."""

from segzoo.checkpoints._checkpoint import Checkpoint
from segzoo.checkpoints._convert import CONVERTERS, detect_format
from segzoo.checkpoints._download import download_file, read_state_dict, snapshot
from segzoo.checkpoints._encoder import load_encoder_weights
from segzoo.checkpoints._heads import load_except_classes, replace_classes
from segzoo.checkpoints._lightning import training_checkpoint_protocol
from segzoo.checkpoints._publish import model_config, push_to_hub, save_pretrained
from segzoo.checkpoints._resolve import resolve
from segzoo.checkpoints._sources import local_path
from segzoo.checkpoints._table import PretrainedCfg, get_encoder_cfg, get_pretrained_cfg, list_pretrained

__all__ = [
    "CONVERTERS",
    "Checkpoint",
    "PretrainedCfg",
    "detect_format",
    "download_file",
    "get_encoder_cfg",
    "get_pretrained_cfg",
    "list_pretrained",
    "load_encoder_weights",
    "load_except_classes",
    "local_path",
    "model_config",
    "push_to_hub",
    "read_state_dict",
    "replace_classes",
    "resolve",
    "save_pretrained",
    "snapshot",
    "training_checkpoint_protocol",
]
