"""Engines that run an exported ONNX file behind one small interface: onnxruntime and OpenVINO.

A backend takes a normalised N×3×H×W float32 array and returns the graph's first output as float32. Precision is
always set explicitly: OpenVINO would otherwise pick bf16 by itself on CPUs that have it, which changes labels
silently.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from segzoo._errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
_EXTRAS_HINT = "install it with pip install 'segzoo[runtime]' (onnxruntime and openvino)"


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

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        self.path = Path(path)
        self.precision = precision
        self.threads = threads or default_threads()

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    """onnxruntime's CPU engine. Its CPU kernels have no bf16 path: ``precision="bf16"`` is refused (use OpenVINO,
    or an int8 file from :func:`segzoo.runtime.quantize_int8`, which onnxruntime runs with VNNI)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        super().__init__(path, precision, threads)
        if precision != "fp32":
            raise ValueError(
                "onnxruntime has no bf16 kernels on the CPU: use backend='openvino' for bf16 (--backend openvino), "
                "or an int8 file (segzoo export --int8)"
            )
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # no warnings about unused initialisers and the like on every load
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class OpenVINOBackend(Backend):
    """OpenVINO's CPU plugin, with an explicit ``INFERENCE_PRECISION_HINT``: ``f32``, or ``bf16`` where the CPU has
    bf16 instructions (AVX512-BF16 or AMX); a CPU without them is refused rather than silently run in fp32."""

    name = "openvino"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        super().__init__(path, precision, threads)
        ov = _import("openvino")
        core = ov.Core()
        if precision == "bf16":
            capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in capabilities:
                raise ValueError(
                    f"this CPU has no bf16 instructions (OpenVINO reports {', '.join(capabilities)}): use fp32"
                )
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: x})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)


def open_backend(
    path: str | Path, backend: str | None = None, precision: str = "fp32", threads: int | None = None
) -> Backend:
    """The engine ``backend`` (default: onnxruntime if installed, else OpenVINO) on the ONNX file ``path``."""
    if backend is None:
        installed = available_backends()
        if not installed:
            raise BackendUnavailableError(f"no inference engine is installed: {_EXTRAS_HINT}")
        backend = "openvino" if precision == "bf16" and "openvino" in installed else installed[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    cls = OnnxRuntimeBackend if backend == "onnxruntime" else OpenVINOBackend
    return cls(path, precision, threads)


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BackendUnavailableError(f"the {name} backend is not installed: {_EXTRAS_HINT}") from err
