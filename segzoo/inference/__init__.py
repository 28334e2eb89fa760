"""Layer 3, inference and export: label maps at the image's size with the checkpoint's own preprocessing, ONNX
export, and drawing label maps. Works on any model of the layers below."""

from segzoo.inference._export import export_onnx, verify_onnx
from segzoo.inference._predict import inference, predict, predict_arrays
from segzoo.inference._visualize import colorize, overlay, overlay_with_legend, side_by_side

__all__ = [
    "colorize",
    "export_onnx",
    "inference",
    "overlay",
    "overlay_with_legend",
    "predict",
    "predict_arrays",
    "side_by_side",
    "verify_onnx",
]
