"""int8 files by static quantisation (onnxruntime's ``quantize_static``), with their label agreement measured.

Calibration runs the fp32 file on the user's photos, prepared by the checkpoint's own test pipeline, to fix the
activation ranges; weights are quantised per output channel. Only the matrix products and convolutions are
quantised (QDQ format, uint8 activations × int8 weights: onnxruntime's VNNI kernels); LayerNorm, softmax and GELU
stay in float, where transformers lose most from int8, and so does the node that writes the output (the classifier,
or the resize after it). The result is then compared with the fp32 file on photos
(the calibration photos unless others are given): the agreement and speed are printed and recorded in the file
(``segzoo.precision``), and a file below ``min_agreement`` is not written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segzoo._atomic import atomic_write
from segzoo.runtime._images import ImageLike, list_images, read_image
from segzoo.runtime._model import Agreement, RuntimeModel, check_agreement

logger = logging.getLogger("segzoo")

QUANTIZED_OPS = ("MatMul", "Conv", "Gemm")


class _Calibration:
    """onnxruntime's ``CalibrationDataReader``: one prepared input per photo (slide-mode checkpoints: the first
    window, the size the model sees)."""

    def __init__(self, model: RuntimeModel, images: Sequence[ImageLike], input_name: str):
        self.model, self.images, self.input_name = model, list(images), input_name
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.images):
            return None
        x = self.model.protocol.prepare_array(read_image(self.images[self.position]))
        self.position += 1
        crop = self.model.protocol.crop
        if self.model.protocol.mode == "slide" and crop is not None:
            x = np.ascontiguousarray(x[..., : crop[0], : crop[1]])
        return {self.input_name: x}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(
    path: str | Path,
    out: str | Path,
    calibration: str | Path | Sequence[ImageLike],
    *,
    check_images: str | Path | Sequence[ImageLike] | None = None,
    min_agreement: float = 0.99,
    threads: int | None = None,
) -> Agreement:
    """Writes an int8 copy of an exported fp32 file, calibrated on photos, after checking its labels against fp32.

    Args:
        path: The fp32 ``.onnx`` file (``segzoo export``).
        out: The int8 file to write.
        calibration: A folder of photos (or a list of images) like those the model will see; a few dozen suffice.
        check_images: Photos to compare int8 and fp32 labels on; the calibration photos by default (an optimistic
            check: give photos the calibration has not seen when you can).
        min_agreement: Refuse, writing nothing, when fewer pixels than this share agree with fp32.
        threads: Engine threads.

    Returns:
        The measured :class:`~segzoo.runtime.Agreement` (also printed to the ``segzoo`` logger and recorded in the
        file's ``segzoo.precision`` metadata).

    Raises:
        segzoo.AgreementError: The int8 labels agree with fp32 on fewer pixels than ``min_agreement``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    path, out = Path(path), Path(out)
    images = list_images(calibration) if isinstance(calibration, (str, Path)) else list(calibration)
    if not images:
        raise ValueError("quantisation needs calibration photos: give a folder with some images")
    checks = (
        images
        if check_images is None
        else (list_images(check_images) if isinstance(check_images, (str, Path)) else list(check_images))
    )
    reference = RuntimeModel(path, "onnxruntime", "fp32", threads)
    with atomic_write(out) as draft:
        quantize_static(
            str(path),
            str(draft),
            _Calibration(reference, images, reference.backend.input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_classifier_nodes(path),
        )
        _copy_metadata(path, draft, None)  # the protocol and classes, to run it; its precision once measured
        quantized = RuntimeModel(draft, "onnxruntime", "fp32", threads)
        result = check_agreement(quantized, reference, checks, min_agreement, what="int8")
        record = {
            "precision": "int8",
            "agreement": round(result.fraction, 6),
            "images": result.images,
            "calibration_images": len(images),
            "summary": str(result),
        }
        _copy_metadata(path, draft, record)
        onnx.checker.check_model(str(draft))
    return result


def _classifier_nodes(path: Path) -> list[str]:
    """The last matrix product or convolution before the graph's output (through reshapes, resizes, bias adds and
    the like), left in float: the classifier decides every label, near-ties most of all, and costs a fraction of a
    percent of the compute."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {name: node for node in graph.node for name in node.output}
    found, frontier = [], [output.name for output in graph.output]
    for _ in range(16):  # a few steps back is enough: the classifier is near the output
        nodes = [producer[name] for name in frontier if name in producer]
        found += [node.name for node in nodes if node.op_type in QUANTIZED_OPS]
        frontier = [name for node in nodes if node.op_type not in QUANTIZED_OPS for name in node.input]
        if not frontier:
            break
    return found


def _copy_metadata(source: Path, target: Path, precision: dict | None) -> None:
    """The fp32 file's segzoo metadata (protocol, classes, output kind) on the int8 file, plus its precision."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    if precision is not None:
        props["segzoo.precision"] = json.dumps(precision)
    model = onnx.load(str(target))
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))
