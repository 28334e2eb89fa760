"""ONNX export with dynamic batch, height and width, verified against onnxruntime.

The file is written under a temporary name beside ``path`` and moved into place only once it passed every check:
the opset written is the one asked for, onnxruntime runs it at sizes other than the example's, and its outputs
match PyTorch. A failed check raises :class:`ExportError` saying what to change, and leaves no file behind (an
existing file at ``path`` is kept).

Supported ways to get a graph of a segzoo model: :func:`export_onnx` (``segzoo export``; any batch, height and
width), ``torch.export.export`` (with ``dynamic_shapes`` for any size), ``torch.compile``, and ``torch.jit.trace``
(at the traced input size only: SETR and Segmenter then fail at other sizes, whose position-embedding resampling
the trace froze). ``torch.jit.script`` is not supported: the models use Python that TorchScript's compiler does not
know (imports inside methods, timm's ViT, keyword-only arguments) and fails deep inside every family; use one of
the ways above instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segzoo._atomic import atomic_write
from segzoo._errors import ExportError
from segzoo._model_config import ONNX_KEY, ModelConfig

__all__ = ["ExportError", "HeadLogits", "export_onnx", "verify_onnx"]

logger = logging.getLogger("segzoo")

# Sizes for verification: odd, so that no patch size or stride divides them (a graph that took a "no padding needed"
# branch at tracing time fails here), different heights and widths, batch 1 and 2.
_VERIFY_SIZES = ((1, 67, 93), (2, 97, 75))
# Protobuf files cannot exceed 2 GB; bigger models keep their weights in a side file ``<name>.onnx.data``.
_SINGLE_FILE_LIMIT = 1_800_000_000


class HeadLogits(nn.Module):
    """A segzoo model whose output is its decode head's low-resolution logits (``forward_head``), for the runtime:
    it brings them to the image's size label tile by label tile, never holding logits at the input size."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_head") or getattr(model, "unpad", None) not in ("resize", "crop"):
            raise ExportError(
                f"head_logits needs a segzoo model (an EncoderDecoder with forward_head), got {type(model).__name__}: "
                "export its logits at the input size instead (head_logits=False)"
            )
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(x)[0]

    def output_info(self) -> dict:
        """How the runtime brings these logits to the input size (``EncoderDecoder._to_input_size``)."""
        return {"logits": "head", "unpad": self.model.unpad, "pad_to_multiple": int(self.model.pad_to_multiple)}


def _parameter_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None, dynamic: bool) -> None:
    dynamic_shapes = None
    if dynamic:
        # Dim.DYNAMIC raises where the model forces a dimension to one value, but accepts guards such as "height is a
        # multiple of 16" taken from the example input: the verification at odd sizes catches those. Positional, so
        # the name of the forward argument does not matter.
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({0: dim, 2: dim, 3: dim},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch.export first, so a model it cannot capture fails here instead of in torch.onnx's draft-export
        # fallback, which can silently specialise shapes.
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
        torch.onnx.export(
            program,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            external_data=_parameter_bytes(model) > _SINGLE_FILE_LIMIT,
            verbose=False,
        )


def _export_legacy(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None, dynamic: bool) -> None:
    dynamic_axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes=dynamic_axes if dynamic else None,
            opset_version=opset or 17,
            dynamo=False,
        )


def verify_onnx(
    model: nn.Module, path: str | Path, sizes: tuple[tuple[int, int, int], ...] = _VERIFY_SIZES, seed: int = 0
) -> float:
    """Runs the ONNX file with onnxruntime and the model with PyTorch on random inputs of several sizes.

    Args:
        model: The exported model.
        path: The ONNX file.
        sizes: (batch, height, width) of each check.
        seed: Seed of the random inputs.

    Returns:
        The largest absolute difference between the two outputs over all sizes.
    """
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for an invalid graph
        raise ExportError(f"onnxruntime cannot load {path}: {_first_line(err)}") from err
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    max_diff = 0.0
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = model(x).float().numpy()
        try:
            actual = session.run(None, {input_name: x.numpy()})[0]
        except Exception as err:  # onnxruntime's Fail, InvalidArgument...: the graph is wrong at this size
            raise ExportError(
                f"onnxruntime cannot run the exported graph on a {batch}×3×{height}×{width} input ({_first_line(err)})"
            ) from err
        if actual.shape != expected.shape:
            raise ExportError(
                f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape} for a {batch}×3×{height}×"
                f"{width} input; the exported graph has a fixed size where the model computes one from the input"
            )
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
    return max_diff


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for marker in ("Status Message:", "] :"):  # onnxruntime prefixes its messages with node and code details
        if marker in text:
            text = text.split(marker, 1)[1].strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


def written_opset(path: str | Path) -> int | None:
    """The version of the default (``ai.onnx``) operator set an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int = 512,
    width: int = 512,
    opset: int | None = None,
    dynamic: bool = True,
    verify: bool = True,
    atol: float = 1e-3,
    head_logits: bool = False,
) -> float | None:
    """Exports a model to ONNX, input ``image`` B×3×H×W, output ``logits`` B×K×H×W.

    With ``head_logits`` the output is the decode head's low-resolution logits instead (B×K×h×w, e.g. a quarter of
    the padded input for SegFormer, a sixteenth for ViT heads) and the metadata (``segzoo.output``) says how they
    map to the input; :mod:`segzoo.runtime` then makes labels at the image's size tile by tile, as ``predict`` does,
    without logits at the input size: less memory and faster, for the runtime only.

    The torch.export-based (dynamo) exporter is tried first; models it cannot trace with symbolic sizes fall back
    to the TorchScript-based exporter with ``dynamic_axes``.

    Args:
        model: The model; it is put in eval mode on the CPU for the export.
        path: Output ``.onnx`` file.
        height: Height of the example input used for tracing.
        width: Width of the example input.
        opset: ONNX opset; the exporter's default when ``None``.
        dynamic: Make batch, height and width dynamic.
        verify: Compare onnxruntime with PyTorch on two other input sizes (only with ``dynamic``; otherwise at the
            export size).
        atol: Largest difference the verification accepts.
        head_logits: Output the decode head's low-resolution logits (segzoo models only; see above).

    Returns:
        The largest absolute difference found by the verification, or ``None`` without it.

    Raises:
        ExportError: The file has another opset than ``opset``, onnxruntime cannot run it at other sizes, or it
            gives other output shapes than PyTorch or differs by more than ``atol``; no file is left at ``path``.
    """
    path = Path(path)
    model = model.eval().cpu()
    graph_model = HeadLogits(model) if head_logits else model
    # Under the final name in a temporary folder, so that an external-data file keeps the name the graph refers to.
    with atomic_write(path) as draft:
        max_diff = _export_and_check(graph_model, draft, height, width, opset, dynamic, verify, atol)
        _record_preprocessing(model, draft, graph_model.output_info() if head_logits else {"logits": "input"})
    return max_diff


def _export_and_check(
    model: nn.Module, path: Path, height: int, width: int, opset: int | None, dynamic: bool, verify: bool, atol: float
) -> float | None:
    example = torch.randn(2, 3, height, width)  # batch 2: exporters specialise dimensions of size 1
    try:
        _export_dynamo(model, example, path, opset, dynamic)
    except Exception as err:  # noqa: BLE001 -- the dynamo exporter rejects some ops/shape logic the legacy one handles
        logger.warning(
            "torch.export could not capture the model (%s: %s); using the TorchScript-based ONNX exporter",
            type(err).__name__,
            _first_line(err),
        )
        _export_legacy(model, example, path, opset, dynamic)
    written = written_opset(path)
    if opset is not None and written != opset:
        raise ExportError(
            f"asked for ONNX opset {opset}, but torch.onnx could only write opset {written} for this model (it "
            f"converts below opset 18 only where every operator has an older version): use --opset {written} "
            "or higher (opset= in export_onnx), or leave it out"
        )
    if not verify:
        return None
    sizes = _VERIFY_SIZES if dynamic else ((2, height, width),)
    try:
        max_diff = verify_onnx(model, path, sizes)
    except ExportError as err:
        raise ExportError(f"{err}. {_size_hint(height, width, dynamic)}") from err
    if max_diff > atol:
        raise ExportError(
            f"the exported ONNX model differs from PyTorch by up to {max_diff:.3g} (> atol={atol}) on inputs of "
            f"sizes {sizes}; the graph may have fixed a shape-dependent branch at tracing time. "
            f"{_size_hint(height, width, dynamic)}"
        )
    return max_diff


def _record_preprocessing(model: nn.Module, path: Path, output: dict) -> None:
    """The graph takes normalised images: write the model's config (:class:`~segzoo._model_config.ModelConfig`, as
    JSON under ``segzoo.config``, with the test pipeline it was exported with under ``pretrained_cfg["eval"]``) and
    what the output is (``segzoo.output``: logits at the input size, or the decode head's and how they reach the input
    size) into the file's ``metadata_props``. The test pipeline, class names and palette are also written under the
    keys segzoo wrote before ``segzoo.config`` (``segzoo.eval_protocol``, ``segzoo.class_names``,
    ``segzoo.palette``), so that an older ``segzoo.runtime`` runs the file too."""
    import onnx

    protocol = getattr(model, "eval_protocol", None)
    config = ModelConfig.of(model)
    if protocol is not None:
        config = dataclasses.replace(config, pretrained_cfg={**config.pretrained_cfg, "eval": protocol.to_dict()})
    props = {ONNX_KEY: config.to_json(), "segzoo.output": json.dumps(output)}
    if protocol is not None:
        props["segzoo.eval_protocol"] = json.dumps(protocol.to_dict())
    if config.class_names:
        props["segzoo.class_names"] = json.dumps(config.class_names)
    if config.palette:
        props["segzoo.palette"] = json.dumps(config.palette)
    graph = onnx.load(str(path), load_external_data=False)  # external weights stay where they are
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))


def _size_hint(height: int, width: int, dynamic: bool) -> str:
    if dynamic and min(height, width) < 256:
        return (
            f"Exporters fix every size that is 1 at the example input, and at {height}×{width} the model's smallest "
            "feature maps are a pixel or two: export at a larger size, e.g. --height 512 --width 512 (height=, "
            "width= of export_onnx), or use --static for this size only"
        )
    return (
        "Export with --static for a graph of this one input size, or check the model's forward for size-dependent "
        "Python branches"
    )
