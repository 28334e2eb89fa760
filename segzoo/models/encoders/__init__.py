"""Encoders: a ViT (SETR, Segmenter; timm's VisionTransformer) and the Mix Transformer (SegFormer)."""

from segzoo.models.encoders.mit import MixTransformer
from segzoo.models.encoders.vit import ViTEncoder, hybrid_vit_encoder

__all__ = ["MixTransformer", "ViTEncoder", "hybrid_vit_encoder"]
