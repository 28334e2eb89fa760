"""Decode heads (and SETR's MLA neck), one file per family."""

from segzoo.models.heads.segformer import MmsegSegformerHead, SegformerHead
from segzoo.models.heads.segmenter import LinearHead, MaskTransformer
from segzoo.models.heads.setr import MlaNeck, SetrMlaHead, SetrUpHead

__all__ = [
    "LinearHead",
    "MaskTransformer",
    "MlaNeck",
    "MmsegSegformerHead",
    "SegformerHead",
    "SetrMlaHead",
    "SetrUpHead",
]
