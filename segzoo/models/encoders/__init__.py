"""Encoders: a ViT (SETR, Segmenter; timm's VisionTransformer), the Mix Transformer (SegFormer), and any timm ViT
(DINOv2, EVA-02, DeiT, AugReg) under the ViT heads."""

from segzoo.models.encoders.mit import MixTransformer
from segzoo.models.encoders.timm_vit import KNOWN_TIMM_ENCODERS, TimmViTEncoder
from segzoo.models.encoders.vit import ViTEncoder, hybrid_vit_encoder

__all__ = ["KNOWN_TIMM_ENCODERS", "MixTransformer", "TimmViTEncoder", "ViTEncoder", "hybrid_vit_encoder"]
