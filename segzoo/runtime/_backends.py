"""Engines that run an exported ONNX file behind one small interface: onnxruntime and OpenVINO.

A backend takes a normalised N×3×H×W float32 array and returns the graph's first output as float32. Precision is
always set explicitly: OpenVINO would otherwise pick bf16 by itself on CPUs that have it, which changes labels
silently.

Exported graphs take any input size, but both engines run a graph whose size is fixed faster: they plan memory and
pick kernels once (measured: SegFormer-B2 at 512×768 on 2 threads, OpenVINO fp32 557 → 481 ms, bf16 297 → 235,
onnxruntime 626 → 565). So an input size that comes back (photos from one camera, a video, sliding windows) gets an
engine compiled for it on its second image: compiling takes about as long as one image (0.5 s for B2), which a size
seen once never pays. Each such engine holds its own copy of the weights and its own buffers (B2: about 450 MB on
OpenVINO, 600 MB on onnxruntime), so only the first ``static_shapes`` sizes that recur get one; later sizes run on
the engine for any size (no engine is dropped for a newer one: sizes that keep changing would compile on every
image).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segzoo._errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
_EXTRAS_HINT = "install it with pip install 'segzoo[runtime]' (onnxruntime and openvino)"
logger = logging.getLogger("segzoo")
STATIC_SHAPES = 2  # input sizes that get an engine compiled for them (see the module's docstring)


def available_backends() -> list[str]:
    """The installed engines, in order of preference."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else every core this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Backend:
    """One compiled model: ``run(x)`` gives the first output for a normalised N×3×H×W float32 batch."""

    name = ""

    def __init__(
        self,
        path: str | Path,
        precision: str = "fp32",
        threads: int | None = None,
        static_shapes: int = STATIC_SHAPES,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        self.path = Path(path)
        self.precision = precision
        self.threads = threads or default_threads()
        self.static_shapes = static_shapes
        self._seen_shapes: set[tuple[int, ...]] = set()
        self._fixed: dict[tuple[int, ...], Callable[[np.ndarray], np.ndarray]] = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._engine_for(tuple(x.shape))(x)

    def fixed_shapes(self) -> list[tuple[int, ...]]:
        """The input sizes that have an engine of their own, in the order they got it."""
        return list(self._fixed)

    def _engine_for(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """The engine fixed to ``shape`` when there is one, or when ``shape`` comes a second time and there is room
        for one more; else the one that takes any size."""
        if shape in self._fixed:
            return self._fixed[shape]
        if shape not in self._seen_shapes or len(self._fixed) >= self.static_shapes:
            self._seen_shapes.add(shape)
            return self._run_any_shape
        try:
            self._fixed[shape] = self._compile_for(shape)
        except Exception as err:  # noqa: BLE001 -- e.g. a graph over protobuf's 2 GB: the any-size engine still runs it
            logger.warning("%s: no engine fixed to %s (%s); one engine runs every size", self.path.name, shape, err)
            self.static_shapes = 0
            return self._run_any_shape
        return self._fixed[shape]

    def _run_any_shape(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _compile_for(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    """onnxruntime's CPU engine. Its CPU kernels have no bf16 path: ``precision="bf16"`` is refused (use OpenVINO,
    or an int8 file from :func:`segzoo.runtime.quantize_int8`, which onnxruntime runs with VNNI)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None, **kwargs):
        super().__init__(path, precision, threads, **kwargs)
        if precision != "fp32":
            raise ValueError(
                "onnxruntime has no bf16 kernels on the CPU: use backend='openvino' for bf16 (--backend openvino), "
                "or an int8 file (segzoo export --int8)"
            )
        self.session = self._session(str(path))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _session(self, model: str | bytes):
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # no warnings about unused initialisers and the like on every load
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def _run_any_shape(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def _compile_for(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        import onnx

        model = onnx.load(str(self.path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for dim, size in zip(dims, shape):
            dim.ClearField("dim_param")
            dim.dim_value = size
        session = self._session(model.SerializeToString())
        return lambda x: session.run([self.output_name], {self.input_name: x})[0]


class OpenVINOBackend(Backend):
    """OpenVINO's CPU plugin, with an explicit ``INFERENCE_PRECISION_HINT``: ``f32``, or ``bf16`` where the CPU has
    bf16 instructions (AVX512-BF16 or AMX); a CPU without them is refused rather than silently run in fp32."""

    name = "openvino"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None, **kwargs):
        super().__init__(path, precision, threads, **kwargs)
        self.core = _openvino_core()
        if precision == "bf16":
            capabilities = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in capabilities:
                raise ValueError(
                    f"this CPU has no bf16 instructions (OpenVINO reports {', '.join(capabilities)}): use fp32"
                )
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = self.core.compile_model(self.core.read_model(str(path)), "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def _run_any_shape(self, x: np.ndarray) -> np.ndarray:
        return _infer(self.compiled, self.request, x)

    def _compile_for(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        model = self.core.read_model(str(self.path))
        model.reshape({model.input(0): list(shape)})
        compiled = self.core.compile_model(model, "CPU", self.config)
        request = compiled.create_infer_request()
        return lambda x: _infer(compiled, request, x)


@functools.cache
def _openvino_core():
    """One OpenVINO Core for the process, as OpenVINO advises. With a Core per engine, a process that had forked
    DataLoader workers and then held two engines crashed (SIGSEGV) at its next subprocess spawn: seen in our test
    suite (tests/data then tests/runtime), not reproduced in a plain script."""
    return _import("openvino").Core()


def _infer(compiled, request, x: np.ndarray) -> np.ndarray:
    result = request.infer({0: x})
    return np.asarray(result[compiled.output(0)], dtype=np.float32)


def open_backend(
    path: str | Path,
    backend: str | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    static_shapes: int = STATIC_SHAPES,
) -> Backend:
    """The engine ``backend`` (default: onnxruntime if installed, else OpenVINO) on the ONNX file ``path``;
    ``static_shapes``: how many recurring input sizes get an engine fixed to them (0: one engine for every size)."""
    if backend is None:
        installed = available_backends()
        if not installed:
            raise BackendUnavailableError(f"no inference engine is installed: {_EXTRAS_HINT}")
        backend = "openvino" if precision == "bf16" and "openvino" in installed else installed[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    cls = OnnxRuntimeBackend if backend == "onnxruntime" else OpenVINOBackend
    return cls(path, precision, threads, static_shapes=static_shapes)


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BackendUnavailableError(f"the {name} backend is not installed: {_EXTRAS_HINT}") from err
