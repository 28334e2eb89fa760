"""An exported segzoo ONNX file as a model that gives ``predict``'s labels, without PyTorch.

The file's metadata says everything: ``segzoo.config`` (the model's config, JSON of
:class:`segzoo._model_config.ModelConfig`: the checkpoint's test pipeline, an :class:`segzoo.EvalProtocol` whose
numpy/OpenCV implementation this module shares with ``predict``, the class names and palette; files exported before it
hold these under ``segzoo.eval_protocol``, ``segzoo.class_names`` and ``segzoo.palette``), and ``segzoo.output``:
whether the graph gives logits at its input size (``segzoo export``'s default) or the decode head's low-resolution
logits (``segzoo export --head-logits``), and how those reach the input size. With the head's logits, whole-image labels
never need logits at the input size; with either, labels at the original size are made tile by tile
(:mod:`segzoo.runtime._labels`), never from full-resolution logits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzoo._errors import AgreementError, RuntimeModelError
from segzoo._model_config import ModelConfig
from segzoo._preprocessing import EvalProtocol, window_spans
from segzoo.runtime._backends import STATIC_SHAPES, Backend, open_backend
from segzoo.runtime._images import ImageLike, list_images, read_image
from segzoo.runtime._labels import Field, labels_from_fields, upsample

logger = logging.getLogger("segzoo")

# The protocol fields this runtime implements (through EvalProtocol's own resize and normalisation, or here). A
# file whose protocol sets any other field to a non-default value is refused: it would be run without it.
KNOWN_PROTOCOL_FIELDS = frozenset(
    {
        "mean",
        "std",
        "test_scale",
        "size_divisor",
        "mode",
        "crop",
        "stride",
        "tta_scales",
        "tta_style",
        "flip",
        "min_short_side",
    }
)
KNOWN_MODES = ("whole", "slide")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (its weights are not read)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise RuntimeModelError(f"{path} is not an ONNX file ({type(err).__name__}: {err})") from err
    return {prop.key: prop.value for prop in model.metadata_props}


def config_from_metadata(metadata: dict[str, str], path: Path) -> ModelConfig:
    """The file's :class:`~segzoo._model_config.ModelConfig` (``segzoo.config``, or the separate keys of files
    exported before it); a clear error for a file without either or whose config cannot be read."""
    try:
        config = ModelConfig.from_onnx_metadata(metadata)
    except (KeyError, TypeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise RuntimeModelError(f"{path}: its segzoo.config metadata cannot be read ({err}); upgrade segzoo") from err
    if config is None or not config.pretrained_cfg.get("eval"):
        raise RuntimeModelError(
            f"{path} has no segzoo.config metadata with a test pipeline, so its test pipeline is unknown: export it "
            "with `segzoo export` (or model.export_onnx), which records it"
        )
    return config


def protocol_from_metadata(metadata: dict[str, str], path: Path) -> EvalProtocol:
    """The file's :class:`EvalProtocol`; a clear error for a file without one or with one this runtime cannot run."""
    values = config_from_metadata(metadata, path).pretrained_cfg["eval"]
    if values.get("mode", "whole") not in KNOWN_MODES:
        raise RuntimeModelError(
            f"{path}: inference mode {values['mode']!r} is not implemented by segzoo.runtime (it knows "
            f"{', '.join(KNOWN_MODES)}); use segzoo.predict with the PyTorch model, or upgrade segzoo"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(EvalProtocol)}
    unknown = {k: v for k, v in values.items() if k not in KNOWN_PROTOCOL_FIELDS and k not in defaults}
    if unknown:
        raise RuntimeModelError(
            f"{path} was exported by a newer segzoo: its protocol has fields this version does not know "
            f"({', '.join(sorted(unknown))}); upgrade segzoo"
        )
    try:
        protocol = EvalProtocol.from_dict(values)
    except (TypeError, ValueError) as err:
        raise RuntimeModelError(f"{path}: its protocol cannot be read ({err}); upgrade segzoo") from err
    unsupported = {
        name: value
        for name, value in protocol.to_dict().items()
        if name not in KNOWN_PROTOCOL_FIELDS and value != _json(defaults[name])
    }
    if unsupported:
        raise RuntimeModelError(
            f"{path}: its protocol sets {unsupported}, which segzoo.runtime does not implement yet; use "
            "segzoo.predict with the PyTorch model"
        )
    return protocol


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value)) if value is not dataclasses.MISSING else value


@dataclasses.dataclass
class Agreement:
    """How far reduced-precision labels agree with fp32 labels, and what each costs."""

    equal_pixels: int
    total_pixels: int
    images: int
    seconds: float  # the reduced-precision model's time per image
    reference_seconds: float  # fp32's

    @property
    def fraction(self) -> float:
        return self.equal_pixels / max(self.total_pixels, 1)

    def __str__(self) -> str:
        speedup = self.reference_seconds / self.seconds if self.seconds else float("nan")
        return (
            f"labels agree with fp32 on {100 * self.fraction:.3f}% of pixels over {self.images} image(s); "
            f"{1000 * self.seconds:.0f} ms per image vs {1000 * self.reference_seconds:.0f} ms in fp32 "
            f"({speedup:.2f}×)"
        )


class RuntimeModel:
    """An exported segzoo model, run by onnxruntime or OpenVINO. ``predict`` gives the labels
    ``segzoo.predict`` gives for the PyTorch model (bar near-ties), at the image's size.

    Attributes:
        config: The model's config as the file records it (:class:`segzoo._model_config.ModelConfig`).
        protocol: The checkpoint's test pipeline (:class:`segzoo.EvalProtocol`).
        class_names: Class names from the file, or ``None``.
        palette: RGB colour per class from the file, or ``None``.
        backend: The engine (``backend.name``, ``backend.precision``, ``backend.threads``).
        precision_record: What the file says about its own precision (an int8 file: its measured agreement).
        checked: The agreement with fp32 measured when the model was opened in reduced precision, or ``None``.
    """

    def __init__(
        self,
        path: str | Path,
        backend: str | None = None,
        precision: str = "fp32",
        threads: int | None = None,
        static_shapes: int = STATIC_SHAPES,
    ):
        self.path = Path(path)
        metadata = read_metadata(self.path)
        self.config = config_from_metadata(metadata, self.path)
        self.protocol = protocol_from_metadata(metadata, self.path)
        self.class_names = self.config.class_names
        self.palette = self.config.palette
        self.output = json.loads(metadata.get("segzoo.output", '{"logits": "input"}'))
        if self.output.get("logits") not in ("input", "head"):
            raise RuntimeModelError(f"{self.path}: unknown output kind {self.output!r}; upgrade segzoo")
        self.precision_record = json.loads(metadata["segzoo.precision"]) if "segzoo.precision" in metadata else None
        self.backend: Backend = open_backend(self.path, backend, precision, threads, static_shapes)
        self.checked: Agreement | None = None
        if self.precision_record:
            logger.warning(
                "%s is %s: %s",
                self.path.name,
                self.precision_record.get("precision"),
                self.precision_record.get("summary", "its agreement with fp32 was not recorded"),
            )

    def __repr__(self) -> str:
        return (
            f"RuntimeModel({str(self.path)!r}, backend={self.backend.name!r}, "
            f"precision={self.backend.precision!r}, mode={self.protocol.mode!r})"
        )

    # --- predicting -------------------------------------------------------------------------------------------

    def predict(
        self,
        image_or_images: ImageLike | Sequence[ImageLike],
        *,
        mode: str | None = None,
        tta: bool = False,
        crop_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        batch_size: int = 4,
    ) -> np.ndarray | list[np.ndarray]:
        """Label maps at the input size, as :func:`segzoo.predict` makes them.

        Args:
            image_or_images: A path, PIL image or H×W×C array, or a list of them.
            mode: ``"whole"`` or ``"slide"``; the checkpoint's by default.
            tta: Multi-scale + flip, as the checkpoint's published multi-scale score was computed.
            crop_size: Sliding window (height, width) for slide mode; the checkpoint's by default.
            stride: Window stride for slide mode; the checkpoint's by default.
            batch_size: Windows per engine call in slide mode.

        Returns:
            An int64 H×W label map, or a list of them for a list.
        """
        if isinstance(image_or_images, (list, tuple)):
            return list(
                self.predict_stream(
                    image_or_images, mode=mode, tta=tta, crop_size=crop_size, stride=stride, batch_size=batch_size
                )
            )
        return self.labels(read_image(image_or_images), self.settings(mode, crop_size, stride, batch_size), tta)

    def predict_stream(self, images: Iterable[ImageLike], **kwargs) -> Iterator[np.ndarray]:
        """Labels for each image of an iterable (a generator, a video reader...), one at a time: only one image and
        its labels are held at once."""
        settings = self.settings(
            kwargs.get("mode"), kwargs.get("crop_size"), kwargs.get("stride"), kwargs.get("batch_size", 4)
        )
        for image in images:
            yield self.labels(read_image(image), settings, kwargs.get("tta", False))

    def predict_folder(self, folder: str | Path | Sequence[str | Path], **kwargs) -> Iterator[tuple[Path, np.ndarray]]:
        """(path, labels) for every image of a folder (searched recursively, sorted) or list of files, one at a
        time."""
        files = list_images(folder)
        yield from zip(files, self.predict_stream(files, **kwargs))

    def settings(
        self, mode: str | None = None, crop_size: Any = None, stride: Any = None, batch_size: int = 4
    ) -> dict[str, Any]:
        """The inference settings: the arguments, else the checkpoint's protocol."""
        mode = mode or self.protocol.mode
        if mode not in KNOWN_MODES:
            raise ValueError(f"unknown inference mode {mode!r}; expected one of {KNOWN_MODES}")
        settings: dict[str, Any] = {"mode": mode, "batch_size": max(1, int(batch_size))}
        if mode == "slide":
            crop = _pair(crop_size) or self.protocol.crop
            stride = _pair(stride) or self.protocol.stride
            if crop is None or stride is None:
                raise ValueError(
                    "slide mode needs a window size and stride, and this file's protocol has none: pass "
                    "crop_size=... and stride=... (e.g. 512 and 341)"
                )
            if stride[0] > crop[0] or stride[1] > crop[1]:
                raise ValueError(
                    f"a stride of {stride} with windows of {crop} leaves pixels no window covers: use a "
                    "stride no larger than the window"
                )
            settings.update(crop=crop, stride=stride)
        return settings

    def labels(self, image: np.ndarray, settings: dict[str, Any], tta: bool = False) -> np.ndarray:
        """Labels for one H×W×3 RGB image (0–255 scale), the way ``predict`` computes them: logits are brought to
        the original size before the argmax, and each multi-scale pass before its probabilities are averaged."""
        original = image.shape[:2]
        if not tta:
            return labels_from_fields(self.fields(self.protocol.prepare_array(image), settings, original), original)
        flips = (False, True) if self.protocol.flip else (False,)
        fields = [
            field
            for ratio in self.protocol.tta_scales
            for x in [self.protocol.prepare_array(image, ratio)]
            for flip in flips
            for field in self.fields(x, settings, original, flip)
        ]
        return labels_from_fields(fields, original)

    def fields(
        self, x: np.ndarray, settings: dict[str, Any], output: tuple[int, int], flip: bool = False
    ) -> list[Field]:
        """Run the engine on a normalised 1×3×h×w input (mirrored when ``flip``) and describe its logits as a field
        at ``output`` size."""
        if flip:
            x = np.ascontiguousarray(x[..., ::-1])
        height, width = x.shape[-2:]
        if settings["mode"] == "slide":
            logits, rows, cols = self._slide(x, settings["crop"], settings["stride"], settings["batch_size"]), [], []
        else:
            # h×w×K, contiguous: the labels gather whole class vectors (a copy at the input size for "input" graphs)
            logits = np.ascontiguousarray(self.backend.run(x)[0].transpose(1, 2, 0))
            rows, cols = self._to_input_size(height, width)
        rows, cols = [*rows, ("resize", output[0])], [*cols, ("resize", output[1])]
        return [Field(logits, rows, cols, flip)]

    def _to_input_size(self, height: int, width: int) -> tuple[list, list]:
        """How the graph's output reaches the input size (``EncoderDecoder._to_input_size``): nothing for logits at
        the input size; for the head's, a resize to it, or to the padded size and a crop."""
        if self.output["logits"] == "input":
            return [], []
        if self.output["unpad"] == "resize":
            return [("resize", height)], [("resize", width)]
        m = int(self.output["pad_to_multiple"])
        padded_h, padded_w = -(-height // m) * m, -(-width // m) * m
        return [("resize", padded_h), ("crop", height)], [("resize", padded_w), ("crop", width)]

    def _window_logits(self, logits: np.ndarray, height: int, width: int) -> np.ndarray:
        """One window's h×w×K logits at the window's size."""
        if self.output["logits"] == "input":
            return logits
        if self.output["unpad"] == "resize":
            return upsample(logits, (height, width))
        rows, cols = self._to_input_size(height, width)
        return upsample(logits, (rows[0][1], cols[0][1]))[:height, :width]

    def _slide(self, x: np.ndarray, crop: tuple[int, int], stride: tuple[int, int], batch_size: int) -> np.ndarray:
        """mmseg's sliding window: overlapping windows' logits summed and divided by the number of windows covering
        each pixel, as H×W×K float32 at the input size (what ``predict`` holds in slide mode too)."""
        height, width = x.shape[-2:]
        windows = [
            (y1, y2, x1, x2)
            for y1, y2 in window_spans(height, crop[0], stride[0])
            for x1, x2 in window_spans(width, crop[1], stride[1])
        ]
        count = np.zeros((height, width, 1), dtype=np.float32)
        summed = None
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            crops = np.ascontiguousarray(np.stack([x[0, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk]))
            outputs = self.backend.run(crops)
            for (y1, y2, x1, x2), window in zip(chunk, outputs):
                logits = self._window_logits(window.transpose(1, 2, 0), y2 - y1, x2 - x1)
                if summed is None:
                    summed = np.zeros((height, width, logits.shape[2]), dtype=np.float32)
                summed[y1:y2, x1:x2] += logits
                count[y1:y2, x1:x2] += 1
        summed /= count
        return summed

    # --- precision ----------------------------------------------------------------------------------------------

    def agreement(self, reference: RuntimeModel, images: Sequence[ImageLike], tta: bool = False) -> Agreement:
        """Share of pixels whose labels equal ``reference``'s (an fp32 model) on ``images``, and each one's time."""
        equal = total = 0
        seconds = reference_seconds = 0.0
        for image in images:
            array = read_image(image)
            start = time.perf_counter()
            labels = self.predict(array, tta=tta)
            seconds += time.perf_counter() - start
            start = time.perf_counter()
            expected = reference.predict(array, tta=tta)
            reference_seconds += time.perf_counter() - start
            equal += int((labels == expected).sum())
            total += labels.size
        n = max(len(images), 1)
        return Agreement(equal, total, len(images), seconds / n, reference_seconds / n)


def load(
    path: str | Path,
    *,
    backend: str | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    check_images: Sequence[ImageLike] | str | Path | None = None,
    min_agreement: float = 0.99,
    static_shapes: int = STATIC_SHAPES,
) -> RuntimeModel:
    """Open an exported segzoo ONNX file with onnxruntime or OpenVINO.

    Args:
        path: The ``.onnx`` file (``segzoo export``; ``--head-logits`` for the smallest memory).
        backend: ``"onnxruntime"`` or ``"openvino"``; by default onnxruntime (OpenVINO for bf16).
        precision: ``"fp32"``, or ``"bf16"`` (OpenVINO, on CPUs with bf16 instructions).
        threads: Engine threads; ``OMP_NUM_THREADS`` or every core by default.
        check_images: For bf16: photos (paths, arrays or a folder) on which the labels are compared with fp32
            before the model is returned; the agreement is logged and kept as ``model.checked``. Without them a
            warning says that bf16 labels were not checked.
        min_agreement: Refuse (:class:`segzoo.AgreementError`) when fewer pixels than this agree with fp32.
        static_shapes: How many input sizes may get an engine fixed to them: the first sizes that come back get
            one, compiled on their second image, which runs 10–15% faster and holds its own copy of the weights
            (0: one engine for every size).
    """
    model = RuntimeModel(path, backend, precision, threads, static_shapes)
    if precision == "fp32":
        return model
    if check_images is None:
        logger.warning(
            "%s runs in %s, whose labels were not compared with fp32: pass check_images= (some photos) to measure it",
            Path(path).name,
            precision,
        )
        return model
    if isinstance(check_images, (str, Path)):
        check_images = list_images(check_images)
    reference = RuntimeModel(path, model.backend.name, "fp32", threads)
    model.checked = check_agreement(model, reference, check_images, min_agreement, what=precision)
    return model


def check_agreement(
    model: RuntimeModel, reference: RuntimeModel, images: Sequence[ImageLike], min_agreement: float, what: str
) -> Agreement:
    """Measure the agreement, log it, and refuse below ``min_agreement``."""
    result = model.agreement(reference, images)
    if result.fraction < min_agreement:
        raise AgreementError(
            f"{what}: {result}, below the {100 * min_agreement:g}% asked for; use fp32, or lower the threshold "
            "(min_agreement=, --min-agreement) if these labels are good enough"
        )
    logger.warning("%s: %s", what, result)
    return result


def _pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])
