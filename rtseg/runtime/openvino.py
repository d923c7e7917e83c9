"""OpenVINO backend on the CPU: the FP32 graph in FP32 or BF16, or the INT8 (QDQ) graph.

OpenVINO picks its inference precision itself: with no hint it runs BF16 on a CPU with AVX512_BF16 or AMX, silently.
This runner always sets ``INFERENCE_PRECISION_HINT`` (f32 for ``fp32``, bf16 for ``bf16``; the INT8 graph's Q/DQ
pairs make OpenVINO run its convs in INT8 and the rest in f32), reads back what the compiled model really uses, and
refuses a BF16 request on a CPU without BF16 instead of emulating it. One inference runs on ``threads`` CPU threads
(``INFERENCE_NUM_THREADS``), latency mode, one stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtsegError, require
from .base import Runner

PRECISIONS = ("fp32", "bf16", "int8")
_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the graph's Q/DQ decide; the rest stays f32


def import_openvino():
    return require("openvino", "openvino")


def openvino_missing_reason() -> str | None:
    """None when OpenVINO imports, else why not (one line)."""
    try:
        import_openvino()
    except RtsegError as exc:
        return str(exc)
    return None


def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU optimisation capabilities (e.g. FP32, BF16, INT8); [] without OpenVINO."""
    try:
        return list(import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except (RtsegError, RuntimeError):
        return []


class OpenVinoRunner(Runner):
    """An ONNX graph compiled by OpenVINO for the CPU at ``precision`` ("fp32", "bf16" or "int8")."""

    backend = "openvino"

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        if precision not in PRECISIONS:
            raise RtsegError(f"unknown OpenVINO precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        super().__init__("cpu")
        self.path, self.precision, self.threads = Path(path), precision, threads
        self.compiled = self.request = None
        self.inference_precision: str | None = None

    def activate_impl(self) -> None:
        ov = import_openvino()
        from ..kernels import default_threads

        if not self.path.is_file():
            raise RtsegError(f"{self.path} is missing; rebuild the bundle with rtseg export")
        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RtsegError("this CPU has no BF16 support (AVX512_BF16 or AMX); use precision fp32 or int8")
        self.threads = int(self.threads or default_threads())
        config = {"INFERENCE_PRECISION_HINT": _HINT[self.precision], "INFERENCE_NUM_THREADS": self.threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RtsegError(f"OpenVINO cannot read or compile {self.path}: {first}") from None
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino Type, e.g. f32
        self.inference_precision = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
        if self.inference_precision != _HINT[self.precision]:  # never a silent change of precision
            raise RtsegError(f"OpenVINO compiled {self.path.name} with inference precision"
                             f" {self.inference_precision}, not the {_HINT[self.precision]} asked for")
        self.request = self.compiled.create_infer_request()
        self.input_shape = list(self.compiled.inputs[0].get_partial_shape().to_string().strip("[]").split(","))
        self.provider = f"OpenVINO CPU ({self.precision})"

    def infer_impl(self, x: Any) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.request.infer({0: x})[self.compiled.outputs[0]]
        return np.array(out, dtype=np.float32) if out.dtype == np.float16 else np.array(out)

    def deactivate_impl(self) -> None:
        self.compiled = self.request = None

    def max_batch(self) -> int | None:
        first = str(self.input_shape[0]).strip()  # "1", or "?" / "1..8" where the axis is dynamic
        return int(first) if first.isdigit() and int(first) > 0 else None

    def replica(self, threads: int) -> OpenVinoRunner:
        return OpenVinoRunner(self.path, self.precision, threads)

    def describe(self) -> dict:
        info = super().describe()
        info.update(graph=self.path.name, precision=self.precision, threads=self.threads,
                    inference_precision=self.inference_precision)
        return info
