"""Device arrays and memory, shared by the kernels and the runtime (streams and events are in
:mod:`rtseg.cuda.streams`, the driver itself in :mod:`rtseg.cuda.driver`).

Device arrays come from PyTorch CUDA tensors, from anything exposing ``__cuda_array_interface__`` (CuPy, Numba,
...), or from a :class:`DeviceArray` wrapping raw memory, such as a :class:`DeviceBuffer` from :func:`alloc`.
For the runtime: :func:`alloc` (a device buffer), :func:`pinned_empty` (page-locked host arrays),
:func:`copy_to_device` / :func:`copy_to_host` (asynchronous on a stream) and the stream-ordered scratch
allocator :func:`alloc_async` / :func:`free_async`, all in the device's primary context. Nothing here
synchronises the host unless its name says so; importing this module needs no cuda-python.
"""

from __future__ import annotations

import functools
import sys
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RtsegError
from .driver import check, cuda_driver, on_device, pointer_device, release
from .streams import stream_for, wait_streams

# ---------------------------------------------------------------------------------------------------------------
# Device arrays


@dataclass(frozen=True)
class DeviceArray:
    """A strided view of device memory: pointer, shape, element strides, NumPy dtype, device ordinal, and the
    stream its producer works on (None: no ordering needed), as ``__cuda_array_interface__`` v3 describes it.

    Wrap raw allocations (a ``cuda.core`` Buffer's ``handle``, a cuMemAlloc pointer) to pass them to the kernels;
    PyTorch tensors and ``__cuda_array_interface__`` objects are converted automatically.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...] | None = None  # elements; None means C-contiguous
    device: int = 0
    stream: int | None = None  # a driver stream handle (1: legacy default stream, 2: per-thread default stream)

    @property
    def element_strides(self) -> tuple[int, ...]:
        if self.strides is not None:
            return tuple(self.strides)
        out, acc = [], 1
        for n in reversed(self.shape):
            out.append(acc)
            acc *= n
        return tuple(reversed(out))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def is_contiguous(self) -> bool:
        return self.strides is None or tuple(self.strides) == DeviceArray(0, self.shape, self.dtype).element_strides

    @property
    def __cuda_array_interface__(self) -> dict:
        itemsize = np.dtype(self.dtype).itemsize
        strides = None if self.strides is None else tuple(s * itemsize for s in self.strides)
        interface = {"shape": self.shape, "typestr": np.dtype(self.dtype).str, "data": (self.ptr, False),
                     "strides": strides, "version": 3}
        if self.stream is not None:
            interface["stream"] = self.stream or 1  # the protocol spells the legacy default stream 1, never 0
        return interface


def is_device_array(obj: Any) -> bool:
    """True for CUDA tensors, __cuda_array_interface__ objects and DeviceArray."""
    if isinstance(obj, DeviceArray):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.is_cuda
    return hasattr(obj, "__cuda_array_interface__")


def as_device_array(obj: Any) -> DeviceArray:
    if isinstance(obj, DeviceArray):
        return obj
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if not obj.is_cuda:
            raise RtsegError("expected a CUDA tensor; move it with .cuda() or use the CPU kernels")
        dtype = np.dtype(str(obj.dtype).removeprefix("torch."))
        return DeviceArray(obj.data_ptr(), tuple(obj.shape), dtype, tuple(obj.stride()), obj.device.index or 0)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise RtsegError(f"cannot read a device pointer from {type(obj).__name__}; pass a CUDA tensor or DeviceArray")
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None:
        strides = tuple(s // dtype.itemsize for s in strides)
    ptr = int(cai["data"][0])
    return DeviceArray(ptr, tuple(cai["shape"]), dtype, strides, pointer_device(ptr), cai_stream(cai))


def cai_stream(interface: dict) -> int | None:
    """The producer's stream in a ``__cuda_array_interface__`` dict (v3's optional "stream"), as a driver handle.

    None when absent or None (the producer needs no ordering). 1 and 2 name the legacy and the per-thread default
    streams, which are also the driver's CU_STREAM_LEGACY and CU_STREAM_PER_THREAD handles; 0 is forbidden by the
    protocol because it would be ambiguous.
    """
    stream = interface.get("stream")
    if stream is None:
        return None
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)):
        raise RtsegError(f"__cuda_array_interface__ stream must be an integer stream handle, got {stream!r}; "
                         "fix the array's producer")
    if int(stream) == 0:
        raise RtsegError("__cuda_array_interface__ stream is 0, which the protocol forbids (the legacy default "
                         "stream is 1); fix the array's producer or pass stream= explicitly")
    return int(stream)


def common_device(arrays: dict[str, DeviceArray], what: str) -> int:
    """The one device all ``arrays`` (name -> array) live on; a one-line RtsegError naming them otherwise."""
    devices = {name: arr.device for name, arr in arrays.items()}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on cuda:{device}" for name, device in devices.items())
        raise RtsegError(f"{what}: inputs and outputs must be on one GPU, got {where}; move them to one device")
    return next(iter(devices.values()))


# ---------------------------------------------------------------------------------------------------------------
# Memory


class DeviceBuffer:
    """``nbytes`` of device memory on ``device`` (cuMemAlloc: synchronous, for buffers allocated once and reused).

    Exposes ``__cuda_array_interface__`` as a flat uint8 array; :meth:`array` views it with a shape and dtype.
    Freed by :meth:`close`, ``with``, or when garbage collected: views must not outlive it.
    """

    def __init__(self, nbytes: int, device: int = 0):
        driver = cuda_driver()
        self.nbytes, self.device = int(nbytes), device
        with on_device(device):
            self.ptr = int(check(driver.cuMemAlloc(max(self.nbytes, 1)), "device allocation"))
        self._release = weakref.finalize(self, release, "cuMemFree", "CUdeviceptr", self.ptr, device)

    def array(self, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        """A C-contiguous view of the buffer's first bytes as ``shape`` of ``dtype``."""
        view = DeviceArray(self.ptr, tuple(int(n) for n in shape), np.dtype(dtype), None, self.device)
        if view.nbytes > self.nbytes:
            raise RtsegError(f"a {np.dtype(dtype).name} array of shape {view.shape} needs {view.nbytes} bytes; "
                             f"the buffer has {self.nbytes}")
        return view

    @property
    def __cuda_array_interface__(self) -> dict:
        return self.array((self.nbytes,), np.uint8).__cuda_array_interface__

    def close(self) -> None:
        self._release()

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def alloc(nbytes: int, device: int = 0) -> DeviceBuffer:
    """A device buffer of ``nbytes`` on ``device``."""
    return DeviceBuffer(nbytes, device)


class _PinnedMemory:
    """Page-locked host memory (cuMemHostAlloc, portable to every context), freed when nothing refers to it."""

    def __init__(self, nbytes: int):
        driver = cuda_driver()
        with on_device(0):  # pinned memory belongs to no device, but the call needs a current context
            self.ptr = int(check(driver.cuMemHostAlloc(max(nbytes, 1), driver.CU_MEMHOSTALLOC_PORTABLE),
                                 "pinned host allocation"))
        self.nbytes = nbytes
        weakref.finalize(self, _free_host, self.ptr)
        self.__array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (self.ptr, False), "version": 3}


def _free_host(ptr: int) -> None:
    try:
        cuda_driver().cuMemFreeHost(ptr)
    except Exception:  # noqa: BLE001 - a finaliser must not raise
        pass


def pinned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous NumPy array in page-locked host memory.

    Copies between it and the device run as DMA, asynchronously on a stream; pageable memory makes the driver
    stage them (host-synchronous on the way back). Freed when this array and all views of it are garbage.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.asarray(_PinnedMemory(nbytes))[:nbytes].view(dtype).reshape(shape)


def _contiguous(obj: Any, what: str) -> DeviceArray:
    arr = as_device_array(obj)
    if not arr.is_contiguous:
        raise RtsegError(f"{what} must be a C-contiguous device array")
    return arr


def _host(array: np.ndarray, nbytes: int, what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise RtsegError(f"{what} must be a C-contiguous NumPy array")
    if array.nbytes != nbytes:
        raise RtsegError(f"{what} has {array.nbytes} bytes, the device array {nbytes}; give them one size")
    return array


def copy_to_device(dst: Any, src: np.ndarray, stream: Any = None) -> None:
    """Queue a copy of host ``src`` into device ``dst`` (same byte size, both C-contiguous) on ``stream``.

    Asynchronous when ``src`` is pinned (:func:`pinned_empty`): keep it unchanged until the stream gets there.
    """
    arr = _contiguous(dst, "dst")
    host = _host(src, arr.nbytes, "src")
    s, others = stream_for([arr], stream, dst)
    driver = cuda_driver()
    with on_device(arr.device):
        wait_streams(s, others, arr.device)
        check(driver.cuMemcpyHtoDAsync(driver.CUdeviceptr(arr.ptr), host.ctypes.data, host.nbytes,
                                       driver.CUstream(s)), "copy to the device")


def copy_to_host(dst: np.ndarray, src: Any, stream: Any = None) -> None:
    """Queue a copy of device ``src`` into host ``dst`` on ``stream``; read ``dst`` only after synchronising
    (asynchronous when ``dst`` is pinned)."""
    arr = _contiguous(src, "src")
    host = _host(dst, arr.nbytes, "dst")
    if not host.flags.writeable:
        raise RtsegError("dst must be a writeable NumPy array")
    s, others = stream_for([arr], stream, src)
    driver = cuda_driver()
    with on_device(arr.device):
        wait_streams(s, others, arr.device)
        check(driver.cuMemcpyDtoHAsync(host.ctypes.data, driver.CUdeviceptr(arr.ptr), host.nbytes,
                                       driver.CUstream(s)), "copy to the host")


def synchronize_device(device: int = 0) -> None:
    """Block the host until all work on ``device``'s primary context has run (for tests and teardown)."""
    with on_device(device):
        check(cuda_driver().cuCtxSynchronize(), "device synchronisation")


@functools.cache
def _scratch_pool(device: int):
    """A memory pool that keeps what it reserved (release threshold: all), so per-frame scratch allocations do
    not go back to the OS at every synchronisation as the default pool's do; None (use the default pool) if the
    pool cannot be made here."""
    driver = cuda_driver()
    try:
        props = driver.CUmemPoolProps()
        props.allocType = driver.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
        props.location.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        props.location.id = device
        pool = check(driver.cuMemPoolCreate(props), "memory pool creation")
        check(driver.cuMemPoolSetAttribute(pool, driver.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                                           driver.cuuint64_t(2**64 - 1)), "memory pool setup")
        return pool
    except Exception:  # noqa: BLE001 - a driver without pools for this device: the default pool still works
        return None


def alloc_async(nbytes: int, device: int, stream: int) -> int:
    """Stream-ordered scratch memory (a pointer), from rtseg's own pool (so the default pool's settings stay the
    caller's); usable by work queued on ``stream`` after this call, released by :func:`free_async`."""
    driver = cuda_driver()
    with on_device(device):
        pool = _scratch_pool(device)
        if pool is not None:
            return int(check(driver.cuMemAllocFromPoolAsync(nbytes, pool, driver.CUstream(stream)),
                             "scratch allocation"))
        return int(check(driver.cuMemAllocAsync(nbytes, driver.CUstream(stream)), "scratch allocation"))


def free_async(ptr: int, device: int, stream: int) -> None:
    """Give scratch memory back once the work queued on ``stream`` so far has run (no host synchronisation)."""
    driver = cuda_driver()
    with on_device(device):
        check(driver.cuMemFreeAsync(driver.CUdeviceptr(ptr), driver.CUstream(stream)), "scratch release")
