"""ONNX export with dynamic batch, height and width, verified against onnxruntime."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["export_onnx", "verify_onnx"]

logger = logging.getLogger(__name__)

# Sizes for verification: odd, so that no patch size or stride divides them (a graph that took a "no padding needed"
# branch at tracing time fails here), different heights and widths, batch 1 and 2.
_VERIFY_SIZES = ((1, 67, 93), (2, 97, 75))
# Protobuf files cannot exceed 2 GB; bigger models keep their weights in a side file ``<name>.onnx.data``.
_SINGLE_FILE_LIMIT = 1_800_000_000


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

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    max_diff = 0.0
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = model(x).float().numpy()
        actual = session.run(None, {input_name: x.numpy()})[0]
        if actual.shape != expected.shape:
            raise RuntimeError(
                f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape} for a {batch}×3×{height}×"
                f"{width} input; the exported graph has a fixed size where the model computes one from the input"
            )
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
    return max_diff


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
) -> float | None:
    """Exports a model to ONNX, input ``image`` B×3×H×W, output ``logits`` B×K×H×W.

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

    Returns:
        The largest absolute difference found by the verification, or ``None`` without it.

    Raises:
        RuntimeError: The exported graph gives other output shapes than PyTorch, or differs by more than ``atol``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.randn(2, 3, height, width)  # batch 2: exporters specialise dimensions of size 1
    try:
        _export_dynamo(model, example, path, opset, dynamic)
    except Exception as err:  # noqa: BLE001 -- the dynamo exporter rejects some ops/shape logic the legacy one handles
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        logger.warning(
            "torch.export could not capture the model (%s: %s); using the TorchScript-based ONNX exporter",
            type(err).__name__,
            first_line,
        )
        _export_legacy(model, example, path, opset, dynamic)
    if not verify:
        return None
    sizes = _VERIFY_SIZES if dynamic else ((2, height, width),)
    max_diff = verify_onnx(model, path, sizes)
    if max_diff > atol:
        raise RuntimeError(
            f"the ONNX model in {path} differs from PyTorch by up to {max_diff:.3g} (> atol={atol}) on inputs of sizes "
            f"{sizes}; the graph may have fixed a shape-dependent branch at tracing time"
        )
    return max_diff
