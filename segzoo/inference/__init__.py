"""Layer 3, inference and export: label maps at the image's size with the checkpoint's own preprocessing, ONNX
export, and drawing label maps. Works on any model of the layers below.

Names are imported on first use (PEP 562): drawing (``_visualize``) needs no torch, so the torch-free runtime's
command line and the demo page can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segzoo._lazy import lazy_names

if TYPE_CHECKING:
    from segzoo.inference._export import export_onnx, verify_onnx
    from segzoo.inference._predict import predict, predict_arrays
    from segzoo.inference._tensor import inference
    from segzoo.inference._visualize import colorize, overlay, overlay_with_legend, side_by_side, validation_panel

_LAZY = {
    "export_onnx": "segzoo.inference._export",
    "verify_onnx": "segzoo.inference._export",
    "inference": "segzoo.inference._tensor",
    "predict": "segzoo.inference._predict",
    "predict_arrays": "segzoo.inference._predict",
    "colorize": "segzoo.inference._visualize",
    "overlay": "segzoo.inference._visualize",
    "overlay_with_legend": "segzoo.inference._visualize",
    "side_by_side": "segzoo.inference._visualize",
    "validation_panel": "segzoo.inference._visualize",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "colorize",
    "export_onnx",
    "inference",
    "overlay",
    "overlay_with_legend",
    "predict",
    "predict_arrays",
    "side_by_side",
    "validation_panel",
    "verify_onnx",
]
