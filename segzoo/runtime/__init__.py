"""segzoo's labels from an exported ONNX file, without PyTorch (``pip install 'segzoo[runtime]'``: onnxruntime,
OpenVINO, numpy, OpenCV).

    import segzoo.runtime

    model = segzoo.runtime.load("segformer-b0-ade.onnx")            # onnxruntime, fp32
    labels = model.predict("street.jpg")                             # H×W class ids, as segzoo.predict gives them
    for path, labels in model.predict_folder("photos/"): ...         # one image at a time
    fast = segzoo.runtime.load("segformer-b0-ade.onnx", backend="openvino", precision="bf16",
                               check_images="photos/")                # bf16, refused below 99% agreement with fp32

The file carries its test pipeline and class names (``segzoo.config``); the runtime applies the pipeline with
the same code as ``predict`` (:class:`segzoo.EvalProtocol`'s numpy/OpenCV resize and normalisation), in whole,
sliding-window and multi-scale + flip modes, and builds labels at the original size tile by tile. Importing it never
imports torch, timm or Lightning.
"""

from segzoo.runtime._backends import BACKENDS, PRECISIONS, available_backends
from segzoo.runtime._images import list_images, read_image
from segzoo.runtime._model import Agreement, RuntimeModel, check_agreement, load, read_metadata
from segzoo.runtime._quantize import quantize_int8

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Agreement",
    "RuntimeModel",
    "available_backends",
    "check_agreement",
    "list_images",
    "load",
    "quantize_int8",
    "read_image",
    "read_metadata",
]
