"""TensorRT backend: a serialized engine run with the name-based I/O API (``execute_async_v3``), whether TensorRT is
usable here (:func:`tensorrt_missing_reason`) and whether a bundle's engine fits this machine
(:func:`check_engine_stamp`). Building engines is :mod:`rtseg.export.engine_build`.

Device buffers are allocated once per input shape and reused; the output stays on the GPU for the upsample+argmax
kernel (device path) or is copied back once (host path, used by export's verification). Memory, the stream and the
copies come from cuda-python's runtime API, which shares the device's primary context with TensorRT; pointers and
the stream go to TensorRT as plain ints. Written to TensorRT >= 10.12 / 11.x; it has not run here (no TensorRT).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtsegError, missing_dependency
from .base import Runner, device_index


MIN_VERSION = (10, 12)


def tensorrt_missing_reason() -> str | None:
    """None when TensorRT >= 10.12 and a CUDA GPU are usable here, else one line saying why not."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError:
        return "TensorRT is not installed (pip install 'rtseg[tensorrt]' on a machine with an NVIDIA GPU)"
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) counts as missing
        return f"TensorRT cannot be imported ({str(exc).splitlines()[0][:120]})"
    if version_tuple(trt.__version__) < MIN_VERSION:
        return f"TensorRT {trt.__version__} is older than 10.12; upgrade with: pip install -U 'tensorrt>=10.12'"
    from ..cuda.info import gpu_info

    try:
        gpu_info()
    except RtsegError as exc:
        return str(exc)
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    """"10.12.0.36" -> (10, 12, 0); stops at the first part that is not a plain number ("11.1.0rc1" -> (11, 1))."""
    parts = []
    for p in version.split(".")[:3]:
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


@functools.cache
def tensorrt_logger():
    """One TensorRT logger for the process: TensorRT keeps a single global logger pointer, so every builder and
    runtime gets this one, and it lives as long as they do."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def check_engine_stamp(bundle, root: Path | None = None) -> Path:
    """The engine's path when it was built for this machine (TensorRT version, GPU compute capability); else one
    line with the rebuild command. ``bundle`` is a :class:`rtseg.bundle.Bundle`, a bundle folder or its
    ``rtseg.json``, or a manifest already read (then ``root`` is its folder)."""
    from ..bundle import Bundle, check_engine_fits, read_document
    from ..bundle.engine import engine_file

    if isinstance(bundle, Bundle):
        manifest, root = bundle.manifest, bundle.root
    elif isinstance(bundle, Mapping):
        manifest, root = bundle, Path(root or ".")
    else:
        root, manifest = read_document(bundle)
    engine_file(manifest, root)  # no engine: the rebuild command, before asking for TensorRT
    if (reason := tensorrt_missing_reason()) is not None:
        raise RtsegError(f"cannot use the engine in {root}: {reason}")
    import tensorrt as trt

    from ..cuda.info import gpu_info

    return check_engine_fits(manifest, root, trt.__version__, gpu_info())


class TensorRTRunner(Runner):
    """``output`` picks one of the engine's outputs by name (default: its first)."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, output: str | None = None, device: str = "cuda:0",
                 stream: int | None = None):
        super().__init__(device)
        self.path, self.output, self._given_stream = Path(engine_path), output, stream
        self._buffers: dict[str, tuple[tuple[int, ...], int, np.ndarray | None]] = {}
        self._own_stream = False

    def activate_impl(self) -> None:
        try:
            import tensorrt as trt
        except ModuleNotFoundError:
            raise missing_dependency("tensorrt", "tensorrt") from None
        try:
            from cuda.bindings import runtime as cudart
        except ModuleNotFoundError:
            raise missing_dependency("cuda-python", "tensorrt") from None

        self._trt, self._cudart = trt, cudart
        _check(cudart.cudaSetDevice(device_index(self.device)))
        if not self.path.is_file():
            raise RtsegError(f"the engine {self.path} is missing; rebuild it with rtseg export")
        self._runtime = trt.Runtime(tensorrt_logger())
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RtsegError(f"TensorRT cannot load {self.path} (built by another TensorRT version or for another"
                             " GPU?); rebuild it with rtseg export")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RtsegError(f"TensorRT cannot create an execution context for {self.path} (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or not self.outputs:
            raise RtsegError(f"{self.path} has inputs {self.inputs} and outputs {self.outputs}; an image"
                             " segmentation engine has one input and at least one output")
        if self.output is not None and self.output not in self.outputs:
            raise RtsegError(f"{self.path} has no output {self.output!r} (its outputs: {', '.join(self.outputs)})")
        self.output = self.output or self.outputs[0]
        self.input_name = self.inputs[0]
        self.input_dtype = self._nptype(self.input_name)
        if self._given_stream is None:
            self.stream, self._own_stream = int(_check(cudart.cudaStreamCreate())), True
        else:
            self.stream = int(self._given_stream)
        self.provider = f"TensorRT {trt.__version__}"

    def _nptype(self, name: str) -> np.dtype:
        dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(self._trt.nptype(dtype))
        except TypeError:
            raise RtsegError(f"engine tensor {name!r} has type {dtype}, which has no NumPy equivalent") from None

    def max_batch(self) -> int | None:
        if all(int(d) >= 0 for d in self.engine.get_tensor_shape(self.input_name)):
            return int(self.engine.get_tensor_shape(self.input_name)[0])  # a static engine: its own batch
        return int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])  # the profile's largest

    def accepted_shapes(self) -> str:
        fixed = [int(d) for d in self.engine.get_tensor_shape(self.input_name)]
        if all(d >= 0 for d in fixed):
            return f"only the shape {fixed}"
        lo, _, hi = ([int(d) for d in dims] for dims in self.engine.get_tensor_profile_shape(self.input_name, 0))
        return f"shapes from {lo} to {hi}"

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype, host: bool) -> tuple[int, np.ndarray | None]:
        """A device buffer for ``name`` (and a host twin for copies back), reallocated only when the shape changes."""
        held = self._buffers.get(name)
        if held is None or held[0] != shape or (host and held[2] is None):
            if held is not None:
                self._cudart.cudaFree(held[1])
            nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
            ptr = int(_check(self._cudart.cudaMalloc(nbytes)))
            twin = np.empty(shape, dtype) if host else None
            held = (shape, ptr, twin)
            self._buffers[name] = held
        return held[1], held[2]

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(self.input_name, shape):
            raise RtsegError(f"the engine takes {self.input_name} {self.accepted_shapes()}, not {list(shape)};"
                             " rebuild it with a --dynamic range that covers this size")

    def infer_impl(self, x: Any) -> Any:
        from ..cuda.memory import is_device_array

        if is_device_array(x):
            return self._infer_device(x)
        return self._infer_host(np.ascontiguousarray(x, dtype=self.input_dtype))

    def _bind_outputs(self, host: bool) -> list[tuple[str, int, np.ndarray | None, tuple[int, ...]]]:
        bound = []
        for out in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(out))
            if any(d < 0 for d in shape):
                raise RtsegError(f"engine output {out!r} has a data-dependent shape {list(shape)}; not supported")
            ptr, twin = self._buffer(out, shape, self._nptype(out), host and out == self.output)
            self.context.set_tensor_address(out, ptr)
            bound.append((out, ptr, twin, shape))
        return bound

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise RtsegError("TensorRT execution failed; see the TensorRT messages above")

    def _infer_host(self, x: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._set_shape(tuple(x.shape))
        ptr, _ = self._buffer(self.input_name, tuple(x.shape), self.input_dtype, host=False)
        _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
        self.context.set_tensor_address(self.input_name, ptr)
        bound = self._bind_outputs(host=True)
        self._execute()
        _, dev, host, _ = next(b for b in bound if b[0] == self.output)
        if host.nbytes:
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        out = host.copy()
        return out.astype(np.float32) if out.dtype == np.float16 else out

    def _infer_device(self, x: Any) -> Any:
        """The input read in place on the GPU; the output left in the runner's buffer (valid until the next call)."""
        from ..cuda.memory import DeviceArray, as_device_array

        arr = as_device_array(x)
        if arr.dtype != self.input_dtype:
            raise RtsegError(f"the engine takes {self.input_dtype} input, got {arr.dtype}")
        self._set_shape(tuple(arr.shape))
        self.context.set_tensor_address(self.input_name, arr.ptr)
        bound = self._bind_outputs(host=False)
        self._execute()
        _, dev, _, shape = next(b for b in bound if b[0] == self.output)
        return DeviceArray(dev, shape, self._nptype(self.output), None, device_index(self.device))

    def deactivate_impl(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        with contextlib.suppress(Exception):  # at interpreter exit the driver may be gone
            if self._own_stream and self.stream is not None:
                cudart.cudaStreamSynchronize(self.stream)
                cudart.cudaStreamDestroy(self.stream)
            for _, ptr, _ in self._buffers.values():
                cudart.cudaFree(ptr)
        self._buffers.clear()
        self.stream = None
        self.context = self.engine = None

    def describe(self) -> dict:
        info = super().describe()
        info.update(graph=self.path.name)
        return info


def _check(result):
    """Unpack a cuda-python ``(err, *values)`` result; raise on an error code."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RtsegError(f"CUDA call failed: {getattr(err, 'name', err)}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)
