"""The public face: :class:`SegmentationModel` and the functions that build and load it.

The layers below know nothing of each other's callers: ``segzoo.models`` builds plain ``EncoderDecoder`` modules,
``segzoo.checkpoints`` fills them with weights and publishes them, ``segzoo.inference`` predicts with and exports any
of them. This module joins them: what ``segzoo.create_model`` and ``segzoo.load`` return is an ``EncoderDecoder``
that also has ``predict``, ``export_onnx``, ``save_pretrained`` and ``push_to_hub`` (as huggingface_hub's
``ModelHubMixin`` gives a model class its Hub methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.checkpoints._load import load as _load
from segzoo.checkpoints._load import load_encoder_weights
from segzoo.checkpoints._publish import push_to_hub, save_pretrained
from segzoo.checkpoints._table import get_pretrained_cfg, list_pretrained
from segzoo.inference._export import export_onnx
from segzoo.inference._predict import predict
from segzoo.models._encoder_decoder import EncoderDecoder
from segzoo.models._registry import build_model
from segzoo.models._registry import list_models as _list_models


class SegmentationModel(EncoderDecoder):
    """An :class:`~segzoo.models.EncoderDecoder` with the checkpoint's preprocessing at hand: ``model(x)`` gives
    B×K×H×W logits, ``model.predict(image)`` label maps at the image's size."""

    def predict(self, image_or_images, **kwargs) -> np.ndarray | list[np.ndarray]:
        """Label map(s) at the input size, with this checkpoint's preprocessing (:func:`segzoo.predict`)."""
        return predict(self, image_or_images, **kwargs)

    def export_onnx(self, path: str | Path, **kwargs) -> float | None:
        """ONNX export with dynamic batch, height and width, verified with onnxruntime (:func:`segzoo.export_onnx`)."""
        return export_onnx(self, path, **kwargs)

    def save_pretrained(self, folder: str | Path, **kwargs) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card to ``folder``
        (:func:`segzoo.save_pretrained`)."""
        return save_pretrained(self, folder, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Save to a temporary folder and upload it to the Hub repository ``repo_id`` (:func:`segzoo.push_to_hub`)."""
        return push_to_hub(self, repo_id, **kwargs)


def create_model(
    name: str,
    *,
    num_classes: int = 150,
    encoder: str | None = None,
    img_size: int | None = None,
    drop_path_rate: float | None = None,
    aux_heads: bool = True,
    in_chans: int = 3,
    encoder_args: dict[str, Any] | None = None,
    decoder_args: dict[str, Any] | None = None,
    neck_args: dict[str, Any] | None = None,
    pretrained_encoder: bool | str = False,
    freeze_encoder: bool = False,
    grad_checkpointing: bool = False,
    unpad: str | None = None,
    device=None,
    dtype=None,
) -> SegmentationModel:
    """Build architecture ``name`` (one of :func:`list_models`) to train.

    Args:
        name: An architecture name from :func:`list_models`.
        num_classes: Number of output classes.
        encoder: For the architectures on any timm ViT (``segmenter-linear``, ``segmenter-mask``, ``setr-naive``,
            ``setr-pup``, ``setr-mla``, ``linear-probe``, ``linear-probe-4``): the timm model name, e.g.
            ``"vit_base_patch14_reg4_dinov2.lvd142m"`` (default DINOv2-S/14 with registers; known to work:
            ``segzoo.models.KNOWN_TIMM_ENCODERS``).
        img_size: Crop size the ViT position embeddings are stored for (other sizes are resampled on the fly).
        drop_path_rate: Encoder stochastic depth.
        aux_heads: Build the auxiliary heads (SETR). They only run through ``forward_with_aux``.
        in_chans: Input channels.
        encoder_args, decoder_args, neck_args: Overrides merged into the registry row (e.g. a narrower
            ``embed_dim`` for tests).
        pretrained_encoder: Initialise the encoder from ImageNet weights: ``True`` takes the checkpoint
            ``checkpoints.yaml`` lists first for this architecture, a name one of ``list_pretrained(kind="encoder")``
            (downloaded once; position embeddings resampled to ``img_size``). For a timm encoder: timm's own
            pretrained weights of ``encoder``.
        freeze_encoder: Freeze the encoder (no gradients, kept in eval mode; see ``EncoderDecoder.freeze_encoder``).
        grad_checkpointing: Recompute the encoder's blocks in the backward pass instead of storing activations
            (ViT-L/g at 512–1024 crops).
        unpad: ``"resize"`` or ``"crop"``: how logits of an input padded to whole patches return to the input size
            (default: the registry row's, mmsegmentation's ``"resize"``; the official Segmenter code crops).
        device: Build on this device (``"meta"`` builds without allocating memory).
        dtype: Parameter dtype.

    Returns:
        A :class:`SegmentationModel` with fresh weights (but the encoder's, with ``pretrained_encoder``).
    """
    model = build_model(
        name, num_classes=num_classes, encoder=encoder, img_size=img_size, drop_path_rate=drop_path_rate,
        aux_heads=aux_heads, in_chans=in_chans, encoder_args=encoder_args, decoder_args=decoder_args,
        neck_args=neck_args, unpad=unpad, device=device, dtype=dtype, model_cls=SegmentationModel,
    )
    if pretrained_encoder:
        load_encoder_weights(model, None if pretrained_encoder is True else pretrained_encoder)
    return _with_training_switches(model, freeze_encoder, grad_checkpointing)


def _with_training_switches(model: SegmentationModel, freeze_encoder: bool, grad_checkpointing: bool):
    """``model`` with the switches that say how it trains (they change no weight and no output)."""
    if freeze_encoder:
        model.freeze_encoder()
    if grad_checkpointing:
        model.set_grad_checkpointing()
    return model


def load(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    freeze_encoder: bool = False,
    grad_checkpointing: bool = False,
    **model_args: Any,
) -> SegmentationModel:
    """A pretrained model in eval mode, with ``model.pretrained_cfg`` and ``model.eval_protocol`` holding its
    preprocessing and evaluation.

    Args:
        name: A checkpoint name from :func:`list_pretrained` (``segformer-b2-ade``), ``hf-hub:org/repo``, a local
            folder or file, or an architecture name when ``checkpoint`` is given.
        checkpoint: A local file or folder, or a URL, in any supported format (detected from its keys), used
            instead of the table's weights.
        num_classes: Keep everything but the class-specific layers, which are re-initialised for this many classes
            (fine-tuning on a new dataset).
        map_location: Device for the weights and the model.
        cache_dir: Hugging Face hub cache folder (default ``HF_HUB_CACHE``).
        freeze_encoder: Freeze the encoder for fine-tuning (as :func:`create_model`).
        grad_checkpointing: Recompute the encoder's blocks in the backward pass (as :func:`create_model`).
        **model_args: Extra :func:`create_model` overrides (``drop_path_rate``, ``aux_heads``, ...).
    """
    if model_args.get("pretrained_encoder"):
        raise ValueError(
            "pretrained_encoder does not apply to segzoo.load: every weight, the encoder's included, comes from the "
            f"checkpoint {name!r}; use segzoo.create_model(<architecture>, pretrained_encoder=True) to start from "
            "ImageNet weights"
        )
    model_args.pop("pretrained_encoder", None)
    model = _load(name, checkpoint=checkpoint, num_classes=num_classes, map_location=map_location,
                  cache_dir=cache_dir, model_cls=SegmentationModel, **model_args)
    return _with_training_switches(model, freeze_encoder, grad_checkpointing)


def list_models(pattern: str | None = None, *, pretrained: bool = False, include_test: bool = False) -> list[str]:
    """Architecture names, each accepted by :func:`create_model`.

    Args:
        pattern: fnmatch pattern, e.g. ``"segformer-*"``.
        pretrained: Only architectures with at least one published checkpoint (``list_pretrained()`` names them).
        include_test: Also the tiny ``*-test*`` variants the tests use (a pattern that mentions ``test`` lists
            them too).
    """
    names = _list_models(pattern, include_test=include_test)
    if pretrained:
        published = {get_pretrained_cfg(checkpoint).arch for checkpoint in list_pretrained()}
        names = [name for name in names if name in published]
    return names


__all__ = ["SegmentationModel", "create_model", "list_models", "load"]
