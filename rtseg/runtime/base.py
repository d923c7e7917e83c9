"""The runner surface every backend shares (Polygraphy's shape): activate, infer, deactivate, a context manager.

A runner executes one graph (an ONNX file, a TensorRT engine, a zoo model) on one device. ``infer`` takes the
network input exactly as the graph wants it, ``(N, 3, H, W)`` in the runner's input dtype, and returns the graph's
single output: low-resolution logits ``(N, C, h, w)``, input-size logits, or labels ``(N, H, W)``. On the CPU both
are NumPy arrays; on a GPU both stay on the device (a CUDA tensor or ``__cuda_array_interface__`` object) and the
call is asynchronous on :attr:`Runner.stream`.

Subclasses fill in ``activate_impl`` / ``infer_impl`` / ``deactivate_impl``; callers never see which one they hold.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import RtsegError
from ..sizes import parse_device as parse_device  # the device names every command takes


class Runner:
    """One graph on one device. Use as ``with runner: out = runner.infer(x)``."""

    #: "onnxruntime", "torch" or "tensorrt"
    backend: str = ""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.is_active = False
        self._last_inference_time: float | None = None
        #: the execution provider or engine really used, filled in by activate (e.g. "CPUExecutionProvider")
        self.provider: str | None = None
        #: NumPy dtype of the graph input (float32, or float16 for FP16-input graphs)
        self.input_dtype: np.dtype = np.dtype(np.float32)
        #: the CUDA stream a GPU runner runs on (an int handle), None on the CPU
        self.stream: int | None = None
        #: the CPU threads one inference is split over, where the backend sets them (None: its own choice)
        self.threads: int | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    # -- the surface --------------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def infer(self, x: Any) -> Any:
        """Run the graph on ``x`` (N, 3, H, W); returns its output (see the module docstring)."""
        if not self.is_active:
            raise RtsegError(f"{type(self).__name__} is not active; use it as a context manager or call activate()")
        start = time.perf_counter()
        out = self.infer_impl(x)
        self._last_inference_time = time.perf_counter() - start
        return out

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def last_inference_time(self) -> float | None:
        """Host seconds of the last ``infer`` (for a GPU runner: the enqueue, not the GPU's work)."""
        return self._last_inference_time

    def describe(self) -> dict:
        return {"backend": self.backend, "device": self.device, "provider": self.provider}

    def max_batch(self) -> int | None:
        """The most frames one ``infer`` call takes (the graph's batch axis): None for any number; 1 (the default)
        for a graph exported at batch 1. Valid once active."""
        return 1

    def replica(self, threads: int) -> Runner | None:
        """A second, inactive runner of the same graph on the same device and provider, computing with ``threads``
        CPU threads, that may run beside this one; None where the backend has none (the default)."""
        return None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Host arrays in and out (export's verification): activates on first use."""
        out = self.activate().infer(x)
        return out if isinstance(out, np.ndarray) else _to_host(out)

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- to be provided -----------------------------------------------------------------------------------
    def activate_impl(self) -> None: ...

    def infer_impl(self, x: Any) -> Any:
        raise NotImplementedError

    def deactivate_impl(self) -> None: ...


def _to_host(out: Any) -> np.ndarray:
    if hasattr(out, "cpu") and hasattr(out, "numpy"):  # a torch tensor
        return out.float().cpu().numpy() if str(out.dtype) == "torch.float16" else out.cpu().numpy()
    raise RtsegError(f"{type(out).__name__} output cannot be read on the host here")


def device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0
