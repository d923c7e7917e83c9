"""ONNX Runtime backend: the CPU provider (threads set for this machine), CUDA, or TensorRT's execution provider.

A GPU session never falls back silently: ONNX Runtime quietly drops a provider whose libraries do not load and
runs everything on the CPU (microsoft/onnxruntime#23372); :meth:`OnnxRuntimeRunner.activate_impl` compares the
providers the session really has with the one asked for and refuses to go on without it.

On the GPU, inputs and outputs are bound to device memory (IO binding), so a frame preprocessed on the GPU is read
in place and the logits stay there for the upsample+argmax kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtsegError, require
from .base import Runner, device_index

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def import_onnxruntime():
    return require("onnxruntime", "video")


def available_providers() -> list[str]:
    """The execution providers this ONNX Runtime build has (not proof that they load: see activate)."""
    return list(import_onnxruntime().get_available_providers())


class OnnxRuntimeRunner(Runner):
    """An ONNX graph in an ONNX Runtime session.

    ``provider`` is "cpu", "cuda" or "tensorrt" (TensorRT's EP, with CUDA behind it for unsupported nodes).
    ``threads`` sets the CPU provider's intra-op threads (default: the cores this process may use).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, provider: str = "cpu", device: str | None = None, threads: int | None = None,
                 stream: int | None = None):
        if provider not in PROVIDERS:
            raise RtsegError(f"unknown ONNX Runtime provider {provider!r}; use one of {', '.join(PROVIDERS)}")
        device = device or ("cpu" if provider == "cpu" else "cuda:0")
        super().__init__(device)
        self.path, self.requested, self.threads = Path(path), provider, threads
        self.session = self._binding = self._last_output = None
        self.stream = stream if provider != "cpu" else None

    def activate_impl(self) -> None:
        ort = import_onnxruntime()
        from ..kernels import default_threads

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.requested == "cpu":
            self.threads = int(self.threads or default_threads())
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = PROVIDERS[self.requested]
        if self.requested != "cpu" and wanted not in ort.get_available_providers():
            raise RtsegError(f"this ONNX Runtime ({ort.__version__}) has no {wanted}; install onnxruntime-gpu"
                             f" (see docs/gpu-install.md) or use device='cpu'")
        providers = [self._provider_entry(wanted)]
        if self.requested == "tensorrt":
            providers.append(self._provider_entry(PROVIDERS["cuda"]))
        if wanted != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")  # nodes the GPU providers do not take
        if not self.path.is_file():
            raise RtsegError(f"{self.path} is missing; rebuild the bundle with rtseg export")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RtsegError(f"ONNX Runtime cannot load {self.path}: {first}") from None
        used = self.session.get_providers()
        if wanted not in used:  # ORT dropped the provider (its CUDA/cuDNN libraries did not load) and went on
            raise RtsegError(f"ONNX Runtime could not start {wanted} for {self.path.name} (it would run on"
                             f" {', '.join(used)}); check the CUDA/cuDNN libraries onnxruntime-gpu needs, or use"
                             f" device='cpu'")
        self.provider = wanted
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.dtype(np.float16 if "float16" in inp.type else np.float32)
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = list(inp.shape)
        if self.on_gpu:
            self._binding = self.session.io_binding()
            self._run_options = ort.RunOptions()
            if self.stream is not None:  # leave the stream running; the caller synchronises once per frame
                self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def _provider_entry(self, name: str):
        if name == "CPUExecutionProvider":
            return name
        options = {"device_id": device_index(self.device)}
        if name == "CUDAExecutionProvider" and self.stream is not None:
            # One CUDA stream for the whole frame: ORT computes on ours, after our preprocess kernel.
            options.update(has_user_compute_stream="1", user_compute_stream=str(int(self.stream)))
        return (name, options)

    def infer_impl(self, x: Any) -> Any:
        if self.on_gpu:
            return self._infer_device(x)
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return out.astype(np.float32) if out.dtype == np.float16 else out

    def _infer_device(self, x: Any) -> Any:
        """IO binding: the input read where it lies on the GPU, the output left there (an ORT-owned OrtValue)."""
        from ..cuda.memory import as_device_array

        arr = as_device_array(x)
        if arr.dtype != self.input_dtype:
            raise RtsegError(f"the graph takes {self.input_dtype} input, got {arr.dtype}")
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_input(self.input_name, "cuda", device_index(self.device), arr.dtype, list(arr.shape), arr.ptr)
        binding.bind_output(self.output_name, "cuda", device_index(self.device))
        self.session.run_with_iobinding(binding, self._run_options)
        self._last_output = binding.get_outputs()[0]  # kept alive until the next call
        return ortvalue_device_array(self._last_output, device_index(self.device))

    def deactivate_impl(self) -> None:
        self.session = self._binding = self._last_output = None

    def max_batch(self) -> int | None:
        first = self.input_shape[0]
        return first if isinstance(first, int) and first > 0 else None  # a name: the axis is symbolic

    def replica(self, threads: int) -> OnnxRuntimeRunner | None:
        """CPU only: another session of the same graph with ``threads`` intra-op threads. Each session owns its
        thread pool, so two one-thread sessions run two frames side by side without sharing a pool."""
        if self.requested != "cpu":
            return None
        return OnnxRuntimeRunner(self.path, "cpu", threads=threads)

    def describe(self) -> dict:
        info = super().describe()
        info.update(graph=self.path.name, requested=PROVIDERS[self.requested])
        if self.requested == "cpu":
            info["threads"] = self.threads
        return info


def ortvalue_device_array(value, device: int) -> Any:
    """A GPU OrtValue as a DeviceArray the CUDA kernels read in place."""
    from ..cuda.memory import DeviceArray

    dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64}.get(value.data_type())
    if dtype is None:
        raise RtsegError(f"the graph output has type {value.data_type()}, which the kernels do not read")
    return DeviceArray(int(value.data_ptr()), tuple(value.shape()), np.dtype(dtype), None, device)
