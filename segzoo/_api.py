"""The public face: :class:`SegmentationModel`, segzoo's one model class, and the factory functions that give one.

The layers below know nothing of each other's callers: ``segzoo.models`` builds networks of any class from a registry
row (``from_arch``), ``segzoo.checkpoints`` reads weights of any source into a ``Checkpoint`` and fills a model with
them, ``segzoo.inference`` predicts with and exports any model. :class:`SegmentationModel` joins them with
huggingface_hub's model methods (``from_pretrained``, ``save_pretrained``, ``push_to_hub``) and ``predict`` /
``export_onnx``. ``segzoo.load`` is ``SegmentationModel.from_pretrained``; ``segzoo.create_model`` is timm's factory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segzoo._errors import UnknownModelError
from segzoo.checkpoints import (
    get_pretrained_cfg,
    list_pretrained,
    load_encoder_weights,
    push_to_hub,
    replace_classes,
    resolve,
    save_pretrained,
)
from segzoo.inference import export_onnx, predict
from segzoo.models import ARCHS, EncoderDecoder, get_arch
from segzoo.models import list_models as _list_models
from segzoo.models._registry import check_num_classes

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo
    from typing_extensions import Self

log = logging.getLogger("segzoo")


class SegmentationModel(EncoderDecoder):
    """segzoo's model: ``model(x)`` gives B×K×H×W logits, ``model.predict(image)`` label maps at the image's size with
    the checkpoint's own preprocessing (``model.eval_protocol``), and ``model.pretrained_cfg`` describes it.

    Made by :meth:`from_arch` (an architecture with fresh weights; ``segzoo.create_model``) or :meth:`from_pretrained`
    (a checkpoint; ``segzoo.load``). Its methods have huggingface_hub's ``PyTorchModelHubMixin`` shape:
    ``from_pretrained``, ``save_pretrained``, ``push_to_hub``. ``predict``, ``export_onnx``, ``save_pretrained`` and
    ``push_to_hub`` are the functions of those names (``segzoo.predict(model, ...)``, ...), which work on any model:
    each method is a one-line call of its function.
    """

    @classmethod
    def from_arch(cls, name: str, *, pretrained_encoder: bool | str = False, **kwargs: Any) -> Self:
        """:meth:`EncoderDecoder.from_arch <segzoo.models.EncoderDecoder.from_arch>` (every argument of it), and:

        Args:
            pretrained_encoder: Initialise the encoder from ImageNet weights: ``True`` takes the checkpoint
                ``checkpoints.yaml`` lists first for this architecture, a name one of
                ``list_pretrained(kind="encoder")`` (downloaded once; position embeddings resampled to ``img_size``).
                For a timm encoder: timm's own pretrained weights of ``encoder``.
        """
        model = super().from_arch(name, **kwargs)
        if pretrained_encoder:
            load_encoder_weights(model, None if pretrained_encoder is True else pretrained_encoder)
        return model

    @classmethod
    def from_pretrained(
        cls,
        name: str | Path,
        *,
        checkpoint: str | Path | None = None,
        num_classes: int | None = None,
        map_location: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        freeze_encoder: bool = False,
        grad_checkpointing: bool = False,
        **overrides: Any,
    ) -> Self:
        """A pretrained model in eval mode, with ``model.pretrained_cfg`` (the checkpoint's ``PretrainedCfg``, field
        for field) and ``model.eval_protocol`` holding its preprocessing and evaluation. ``segzoo.load`` is this.

        Args:
            name: A checkpoint name from ``list_pretrained()`` (``segformer-b2-ade``), ``hf-hub:org/repo``, a local
                folder or file written as a path (``./run``, ``local-dir:run``), or an architecture name when
                ``checkpoint`` is given (see :func:`segzoo.checkpoints.resolve`).
            checkpoint: A local file or folder, or a URL, in any supported format (detected from its keys), used
                instead of the table's weights.
            num_classes: Keep everything but the class-specific layers, which are re-initialised for this many
                classes (fine-tuning on a new dataset).
            map_location: Device for the weights and the model.
            cache_dir: Hugging Face hub cache folder (default ``HF_HUB_CACHE``).
            freeze_encoder, grad_checkpointing: Training switches (``configure_training``).
            **overrides: Other :meth:`from_arch` arguments (``drop_path_rate``, ``aux_heads``, ...).
        """
        if num_classes is not None:
            check_num_classes(num_classes)  # before any download
        if overrides.pop("pretrained_encoder", False):
            raise ValueError(
                "pretrained_encoder does not apply to segzoo.load: every weight, the encoder's included, comes from "
                f"the checkpoint {name!r}; use segzoo.create_model(<architecture>, pretrained_encoder=True) to start "
                "from ImageNet weights"
            )
        found = resolve(name, checkpoint=checkpoint, cache_dir=cache_dir, **overrides)
        model = found.load_into(cls.from_arch(found.arch, num_classes=found.num_classes, **found.model_args))
        if num_classes is not None and num_classes != model.num_classes:
            model = replace_classes(model, num_classes)
        model = model.to(map_location).eval()
        return model.configure_training(freeze_encoder=freeze_encoder, grad_checkpointing=grad_checkpointing)

    def predict(self, image_or_images, **kwargs) -> np.ndarray | list[np.ndarray]:
        """:func:`segzoo.predict` of this model: label map(s) at the input size, with its own preprocessing."""
        return predict(self, image_or_images, **kwargs)

    def export_onnx(self, path: str | Path, **kwargs) -> float | None:
        """:func:`segzoo.export_onnx` of this model: ONNX with dynamic batch, height and width, verified with
        onnxruntime."""
        return export_onnx(self, path, **kwargs)

    def save_pretrained(
        self, save_directory: str | Path, *, repo_id: str | None = None, push_to_hub: bool = False, **kwargs
    ) -> str | None:
        """:func:`segzoo.save_pretrained` of this model: ``model.safetensors``, ``config.json`` and a model card in
        ``save_directory``, which :meth:`from_pretrained` reads back; with ``push_to_hub=True`` also uploaded to
        ``repo_id`` (default: the folder's name). Returns what huggingface_hub's ``ModelHubMixin.save_pretrained``
        returns: ``None``, or the commit URL of the upload."""
        save_pretrained(self, save_directory, repo_id=repo_id, **kwargs)
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, pretrained_cfg=kwargs.get("pretrained_cfg"))
        return None

    def push_to_hub(self, repo_id: str, **kwargs) -> CommitInfo:
        """:func:`segzoo.push_to_hub` of this model: saved, then uploaded to the Hub repository ``repo_id``."""
        return push_to_hub(self, repo_id, **kwargs)


load = SegmentationModel.from_pretrained  # segzoo.load(name, ...): the same method, the same arguments


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> SegmentationModel:
    """timm's factory: a model of an architecture, with fresh or pretrained weights.

    Args:
        name: An architecture from :func:`list_models` (``segformer-b2``). With ``pretrained=True`` a checkpoint
            name from ``list_pretrained()`` (``segformer-b2-ade``) is taken too.
        pretrained: Load weights: an architecture's default checkpoint (the first of
            ``list_pretrained(arch=name)``, as timm takes an architecture's default tag), or the checkpoint named.
        **kwargs: Without ``pretrained``, :meth:`SegmentationModel.from_arch`'s (``num_classes``,
            ``pretrained_encoder``, ...); with it, :meth:`SegmentationModel.from_pretrained`'s (``num_classes`` for a
            new head, ...).

    Returns:
        A :class:`SegmentationModel`: in training mode with fresh weights, or in eval mode with the checkpoint's
        (what ``segzoo.load`` returns).
    """
    if name in list_pretrained() and name not in ARCHS:
        if not pretrained:
            raise UnknownModelError(
                f"{name!r} is a checkpoint, not an architecture: segzoo.load({name!r}) (or create_model({name!r}, "
                f"pretrained=True)) loads its weights; segzoo.create_model({get_pretrained_cfg(name).arch!r}) builds "
                "its architecture with fresh weights"
            )
        return SegmentationModel.from_pretrained(name, **kwargs)
    if name in list_pretrained(kind="encoder"):
        raise UnknownModelError(
            f"{name!r} is an ImageNet encoder checkpoint, not a model: segzoo.create_model(<architecture>, "
            f"pretrained_encoder={name!r}) starts a model from it"
        )
    if not pretrained:
        return SegmentationModel.from_arch(name, **kwargs)
    get_arch(name)  # an unknown name says so, with the closest names
    published = list_pretrained(arch=name)
    if not published:
        raise UnknownModelError(
            f"{name!r} has no published checkpoint (segzoo.list_pretrained() names them all), so pretrained=True has "
            f"nothing to load: segzoo.create_model({name!r}, pretrained_encoder=True) starts from ImageNet encoder "
            f"weights, segzoo.load({name!r}, checkpoint='path/or/url') from your own"
        )
    log.info(
        "create_model(%r, pretrained=True): loading %s, its first checkpoint of %s",
        name,
        published[0],
        ", ".join(published),
    )
    return SegmentationModel.from_pretrained(published[0], **kwargs)


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
