"""The CUDA driver API through cuda-python: initialisation, device queries and per-device contexts.

The lowest layer of :mod:`rtseg.cuda`, under device memory (:mod:`~rtseg.cuda.memory`), streams and events
(:mod:`~rtseg.cuda.streams`) and the kernel launches. It works in the device's *primary* context, the one
PyTorch, ONNX Runtime and TensorRT use through the runtime API, so pointers and streams pass freely between them
and rtseg. cuda-python is imported lazily: a machine without it gets a one-line error naming the ``gpu`` extra
when something here is first called, not at import.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any

from ..errors import RtsegError, missing_dependency


def cuda_driver():
    """The cuda.bindings driver module."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise missing_dependency("cuda-python (cuda.bindings)", "gpu") from exc
    return driver


def check(result, what: str) -> Any:
    """Unpack a cuda.bindings driver result tuple ``(CUresult, *values)``, raising RtsegError on failure."""
    driver = cuda_driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(err)
        raise RtsegError(f"CUDA {what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


@functools.cache
def init() -> None:
    """cuInit, once; a machine without the NVIDIA driver library gets an RtsegError, not a loader exception."""
    driver = cuda_driver()
    try:
        result = driver.cuInit(0)
    except Exception as exc:  # noqa: BLE001 - cuda-python raises its loader's own error types
        raise RtsegError(f"the NVIDIA driver (libcuda) could not be loaded: {exc}") from exc
    check(result, "initialisation")


@functools.cache
def driver_version() -> tuple[int, int]:
    """The CUDA version the installed driver supports, as (major, minor)."""
    init()
    version = int(check(cuda_driver().cuDriverGetVersion(), "driver version query"))
    return version // 1000, version % 1000 // 10


def device_count() -> int:
    """How many CUDA devices the driver sees."""
    init()
    return int(check(cuda_driver().cuDeviceGetCount(), "device count"))


def device_arch(device: int = 0) -> str:
    """The device's compute capability as an NVRTC architecture, e.g. ``"sm_90"``."""
    init()
    driver = cuda_driver()
    dev = check(driver.cuDeviceGet(device), "device query")
    attr = driver.CUdevice_attribute
    major = check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "arch")
    minor = check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "arch")
    return f"sm_{major}{minor}"


def device_name(device: int = 0) -> str:
    """The device's marketing name, e.g. ``"NVIDIA H100 80GB HBM3"`` (what an engine's GPU stamp compares)."""
    init()
    driver = cuda_driver()
    dev = check(driver.cuDeviceGet(device), "device query")
    name = check(driver.cuDeviceGetName(256, dev), "device name query")
    return bytes(name).split(b"\0", 1)[0].decode(errors="replace")


_lock = threading.RLock()
_primary: dict[int, Any] = {}  # device ordinal -> its retained primary context
_context_devices: dict[int, int] = {}  # context handle -> its CUdevice, so launches skip the query


def _primary_context(device: int):
    with _lock:
        ctx = _primary.get(device)
        if ctx is None:
            driver = cuda_driver()
            dev = check(driver.cuDeviceGet(device), "device query")
            ctx = _primary[device] = check(driver.cuDevicePrimaryCtxRetain(dev), "primary context")
        return ctx


@functools.cache
def _device_handle(device: int) -> int:
    return int(check(cuda_driver().cuDeviceGet(device), "device query"))


def current_context(device: int = 0):
    """Make sure this thread has a current context; with none, device's primary context (the one PyTorch and the
    runtime API use) becomes current, as the runtime would do. Returns the current context."""
    init()
    driver = cuda_driver()
    ctx = check(driver.cuCtxGetCurrent(), "context query")
    if int(ctx) == 0:
        ctx = _primary_context(device)
        check(driver.cuCtxSetCurrent(ctx), "context activation")
    return ctx


@contextlib.contextmanager
def on_device(device: int):
    """Run the block with a context of ``device`` current: the thread's own when it is on that device, else the
    device's primary context pushed for the block only (the caller's current device is left as it was)."""
    ctx = current_context(device)
    driver = cuda_driver()
    owner = _context_devices.get(int(ctx))
    if owner is None:
        owner = _context_devices[int(ctx)] = int(check(driver.cuCtxGetDevice(), "device query"))
    if owner == _device_handle(device):
        yield ctx
        return
    ctx = _primary_context(device)
    check(driver.cuCtxPushCurrent(ctx), "context activation")
    try:
        yield ctx
    finally:
        check(driver.cuCtxPopCurrent(), "context release")


def pointer_device(ptr: int) -> int:
    """The ordinal of the device that owns ``ptr`` (0 when the driver cannot tell)."""
    driver = cuda_driver()
    attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    try:
        init()
        return int(check(driver.cuPointerGetAttribute(attr, ptr), "pointer query"))
    except RtsegError:
        return 0


def release(function: str, kind: str, handle: int, device: int) -> None:
    """``driver.<function>(driver.<kind>(handle))`` on ``device``: destroy a stream or event, or free memory, from
    a finaliser; errors are ignored (this also runs at interpreter exit, when the context may be gone)."""
    try:
        driver = cuda_driver()
        with on_device(device):
            getattr(driver, function)(getattr(driver, kind)(handle))
    except Exception:  # noqa: BLE001 - a finaliser must not raise
        pass
