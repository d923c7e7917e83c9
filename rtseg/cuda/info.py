"""What GPU this is: its name and compute capability (:class:`GpuInfo`), through cuda-python's runtime API.

What a TensorRT engine's stamp records and compares, and what its timing cache is keyed by; its callers are the
TensorRT build and check, so a missing cuda-python names the ``tensorrt`` extra. A machine without a usable GPU
gets one line saying why: no driver, a driver older than cuda-python's CUDA, or no device. cuda-python is
imported only when :func:`gpu_info` is called.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..errors import RtsegError, missing_dependency


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "major.minor"


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of a CUDA device, through cuda-python."""
    try:
        from cuda.bindings import runtime as cudart
    except ModuleNotFoundError:
        raise missing_dependency("cuda-python", "tensorrt") from None
    try:
        err, prop = cudart.cudaGetDeviceProperties(device)
    except Exception as exc:  # noqa: BLE001 - no driver raises from the binding
        raise RtsegError(f"no usable CUDA driver ({exc})") from None
    if int(err) != 0:
        raise RtsegError(_no_gpu_message(cudart, err))
    name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name, f"{prop.major}.{prop.minor}")


def _no_gpu_message(cudart, err) -> str:
    """Why a CUDA call found no GPU: no driver at all, a driver older than cuda-python's CUDA, or no device."""
    name = getattr(err, "name", str(err))
    driver = runtime = -1
    with contextlib.suppress(Exception):  # only a better message is at stake
        driver = int(cudart.cudaDriverGetVersion()[1])  # 0 when no driver is installed
    with contextlib.suppress(Exception):
        runtime = int(cudart.getLocalRuntimeVersion()[1])  # the CUDA version cuda-python was built for
    if driver == 0:
        return "no NVIDIA driver on this machine (no CUDA GPU to build or run a TensorRT engine)"
    if driver > 0 and runtime // 1000 > driver // 1000:  # a newer CUDA major than the driver knows
        return (f"the NVIDIA driver supports CUDA {driver // 1000}.{driver % 1000 // 10} but cuda-python is built for"
                f" CUDA {runtime // 1000}.{runtime % 1000 // 10}; install the cuda-python of the driver's CUDA"
                f" (pip install 'cuda-python<{driver // 1000 + 1}') or update the driver")
    return f"no usable NVIDIA GPU (cudaGetDeviceProperties: {name})"
