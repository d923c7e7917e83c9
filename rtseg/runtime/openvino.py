"""OpenVINO backend on the CPU: the FP32 graph in FP32 or BF16, or the INT8 (QDQ) graph.

OpenVINO picks its inference precision itself: with no hint it runs BF16 on a CPU with AVX512_BF16 or AMX, silently.
This runner always sets ``INFERENCE_PRECISION_HINT`` (f32 for ``fp32``, bf16 for ``bf16``; the INT8 graph's Q/DQ
pairs make OpenVINO run its convs in INT8 and the rest in f32), reads back what the compiled model really uses, and
refuses a BF16 request on a CPU without BF16 instead of emulating it. One inference runs on ``threads`` CPU threads
(``INFERENCE_NUM_THREADS``), latency mode, one stream.

The INT8 graph's network input is U8 with zero point 128 (rtseg/export/quantize.py); this runner reads that Q/DQ pair
as S8 with zero point 0, the same values exactly (q - 128, the same scale), because OpenVINO runs a conv whose input
has a non-zero zero point with a padding compensation, 27-45% slower on a network's 3-channel stem.
"""

from __future__ import annotations

import tempfile
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


def _signed_input(path: Path, folder: Path) -> Path:
    """``path`` with each Q/DQ pair on a graph input that is U8 with zero point 128 made S8 with zero point 0 (the
    same dequantized values), written into ``folder``; ``path`` itself where there is none (or ONNX is missing)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        return path
    model = onnx.load(str(path))
    inputs = {i.name for i in model.graph.input}
    inits = {i.name: i for i in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inputs]
    changed = set()
    for q in quants:
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        if zp is None or zp.data_type != onnx.TensorProto.UINT8 or numpy_helper.to_array(zp).tolist() != 128:
            continue
        dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        if not dqs or any(n.op_type != "DequantizeLinear" for n in model.graph.node if q.output[0] in n.input):
            continue
        users = [n for n in model.graph.node if q.input[2] in n.input]
        if any(len(n.input) < 3 or n.input[2] != q.input[2] for n in dqs) or len(users) != len(dqs) + 1:
            continue  # a zero point shared with another pair stays as it is
        zp.CopyFrom(numpy_helper.from_array(np.zeros((), np.int8), zp.name))
        changed.add(q.output[0])
    if not changed:
        return path
    for vi in model.graph.value_info:  # a stale U8 type on the Q's output
        if vi.name in changed:
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    out = folder / path.name
    onnx.save(model, str(out))
    return out


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
            if self.precision == "int8" and self.path.suffix == ".onnx":
                with tempfile.TemporaryDirectory(prefix="rtseg-ov-") as tmp:
                    model = core.read_model(str(_signed_input(self.path, Path(tmp))))
                    self.compiled = core.compile_model(model, "CPU", config)
            else:
                self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
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
