"""CUDA face of the kernels: cpp_ext/kernels.cu, compiled by NVRTC (:mod:`rtseg.kernels.cubin`, through the
CUDA layer's :mod:`rtseg.cuda.nvrtc`), launched with the driver API (:mod:`rtseg.cuda.driver`).

The four wrappers take device arrays (:mod:`rtseg.cuda.memory`), check that their inputs and outputs live on
one GPU, and launch on the caller's stream (:func:`rtseg.cuda.streams.stream_for`: ``stream=``, else the
stream an input's ``__cuda_array_interface__`` names, else PyTorch's current stream). They never synchronise the
host. Scratch memory comes from the stream-ordered allocator (cuMemAllocAsync / cuMemFreeAsync).

Everything here imports cuda-python lazily: ``import rtseg.kernels`` works without it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import sys
import threading
from typing import Any

import numpy as np

from ..cuda import memory, nvrtc
from ..cuda.driver import check, cuda_driver, device_arch, device_count, driver_version, on_device
from ..cuda.memory import DeviceArray, as_device_array, common_device
from ..cuda.streams import stream_for, wait_streams
from ..errors import RtsegError
from . import cubin

#: every CUDA entry point in cpp_ext/kernels.cu
KERNEL_NAMES: tuple[str, ...] = (
    "rtseg_lowres_argmax_f32",
    "rtseg_lowres_argmax_f16",
    "rtseg_upsample_argmax_f32_u8",
    "rtseg_upsample_argmax_f32_i32",
    "rtseg_upsample_argmax_f16_u8",
    "rtseg_upsample_argmax_f16_i32",
    "rtseg_preprocess_f32",
    "rtseg_preprocess_f16",
    *(f"rtseg_{op}_{t}" for op in ("overlay", "colorize") for t in ("u8", "u16", "i32", "i64")),
)
_BLOCK = 256
_PALETTE_MAX = 256


_lock = threading.RLock()
_modules: dict[int, tuple[Any, dict[str, Any]]] = {}  # context handle -> (module, functions)


def _load_module(device: int):
    """The kernels as a module of the current context: compiled (or read from the cache) for device's arch."""
    driver = cuda_driver()
    target = nvrtc.compile_target(device_arch(device))
    result = driver.cuModuleLoadData(cubin.compile_cubin(target))
    if result[0] != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(result[0])
        name = name.decode() if isinstance(name, bytes) else name
        (nv_major, nv_minor), (drv_major, drv_minor) = nvrtc.nvrtc_version(), driver_version()
        hint = ""
        if (nv_major, nv_minor) > (drv_major, drv_minor):
            hint = (f"; NVRTC {nv_major}.{nv_minor} is newer than the CUDA {drv_major}.{drv_minor} this driver "
                    f"supports: update the driver, or use an NVRTC of CUDA {drv_major} (pip install "
                    f"{nvrtc.nvrtc_wheel(drv_major)}, with cuda-python {drv_major}.x so that it is the one loaded)")
        raise RtsegError(f"CUDA module load ({target}, NVRTC {nv_major}.{nv_minor}) failed: {name}{hint}")
    return result[1]


def _function(name: str, device: int, ctx):
    """The CUfunction ``name`` in ``ctx``, the current context (loading the module on first use there)."""
    driver = cuda_driver()
    key = int(ctx)
    with _lock:
        entry = _modules.get(key)
        if entry is None:
            entry = _modules[key] = (_load_module(device), {})
        module, functions = entry
        fn = functions.get(name)
        if fn is None:
            fn = functions[name] = check(driver.cuModuleGetFunction(module, name.encode()), f"lookup of {name}")
        return fn


class _Driver:
    """The real device behind the kernel wrappers: launches, scratch memory and cross-stream waits.

    The wrappers only call these four methods, so a test can put a CPU emulation of the device in its place.
    """

    def launch(self, name: str, device: int, grid: int, block: int, stream: int, args: list) -> None:
        """Launch ``name`` on ``stream`` with ``args`` (ctypes values, one per kernel parameter)."""
        driver = cuda_driver()
        params = kernel_params(args)
        with on_device(device) as ctx:
            fn = _function(name, device, ctx)
            # kernelParams as an int: the address of a void*[] (the C API's form); the driver copies each
            # parameter's bytes (size from the cubin) before cuLaunchKernel returns, so `params` may die after.
            check(driver.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, driver.CUstream(stream),
                                        ctypes.addressof(params), 0), f"launch of {name}")

    def alloc(self, nbytes: int, device: int, stream: int) -> int:
        return memory.alloc_async(nbytes, device, stream)

    def free(self, ptr: int, device: int, stream: int) -> None:
        memory.free_async(ptr, device, stream)

    def wait(self, stream: int, others: tuple[int, ...], device: int) -> None:
        """Order ``stream`` after the work queued on ``others`` (the producers' streams of the arrays)."""
        wait_streams(stream, others, device)


_device: Any = _Driver()


def kernel_params(args: list) -> ctypes.Array:
    """The void*[] cuLaunchKernel takes: one pointer to each argument's bytes. It points into ``args``, which
    must stay alive while the array is used."""
    return (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))


def _launch(name: str, device: int, count: int, stream: int, args: list) -> None:
    """Launch ``name`` with one thread per item on ``stream``; args are ctypes values, one per kernel parameter."""
    if count <= 0:
        return
    grid = (count + _BLOCK - 1) // _BLOCK
    if grid >= 2**31:
        raise RtsegError(f"{name}: {count} output items is more than one launch can cover; split the batch")
    _device.launch(name, device, grid, _BLOCK, stream, args)


class _Scratch:
    """Stream-ordered device scratch memory: allocated and freed on the stream, no host synchronisation."""

    def __init__(self, nbytes: int, device: int, stream: int):
        self.device, self.stream = device, stream
        self.ptr = _device.alloc(max(int(nbytes), 1), device, stream)

    def __enter__(self) -> int:
        return self.ptr

    def __exit__(self, *exc) -> None:
        _device.free(self.ptr, self.device, self.stream)


def _prepare(what: str, stream: Any, like: Any, **arrays: DeviceArray | None) -> tuple[int, int]:
    """(device, stream) of one kernel call: the one GPU all its arrays live on (RtsegError otherwise) and the
    stream it runs on (:func:`~rtseg.cuda.streams.stream_for`), ordered after any other stream that an
    array's producer named in its ``__cuda_array_interface__``."""
    named = {name: arr for name, arr in arrays.items() if arr is not None}
    device = common_device(named, what)
    s, others = stream_for(list(named.values()), stream, like)
    if others:
        _device.wait(s, others, device)
    return device, s


def _empty_like_device(like: Any, shape: tuple[int, ...], dtype: np.dtype):
    """A new output on like's device: a torch tensor when the input is one, else the caller must pass out=."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(like, torch.Tensor):
        return torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=like.device)
    raise RtsegError("pass out= (a preallocated device array) when the input is not a PyTorch CUDA tensor")


def _i64(v: int) -> ctypes.c_longlong:
    return ctypes.c_longlong(int(v))


def _i32(v: int) -> ctypes.c_int:
    return ctypes.c_int(int(v))


def _ptr(v: int) -> ctypes.c_void_p:
    return ctypes.c_void_p(int(v) or None)


def _check_output(out: DeviceArray, shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != np.dtype(dtype):
        raise RtsegError(f"{name} must be {np.dtype(dtype).name} of shape {tuple(shape)}, got "
                         f"{np.dtype(out.dtype).name} {tuple(out.shape)}")
    if out.strides is not None and tuple(out.strides) != DeviceArray(0, shape, dtype).element_strides:
        raise RtsegError(f"{name} must be C-contiguous")


# ---------------------------------------------------------------------------------------------------------------
# Kernels


def upsample_argmax(logits: Any, size: tuple[int, int], align_corners: bool = False, out: Any = None,
                    score: Any = None, return_score: bool = False, stream: Any = None):
    """CUDA twin of :func:`rtseg.kernels.upsample_argmax` (see there). Returns labels, or (labels, score)."""
    from .cpu import label_dtype  # the shared dtype rule

    arr = as_device_array(logits)
    squeeze = len(arr.shape) == 3
    if squeeze:
        arr = dataclasses.replace(arr, shape=(1, *arr.shape), strides=(0, *arr.element_strides))
    if len(arr.shape) != 4:
        raise RtsegError(f"logits must be (N, C, h, w) or (C, h, w), got shape {arr.shape}")
    dtype = np.dtype(arr.dtype)
    if dtype not in (np.float32, np.float16):
        raise RtsegError(f"logits must be float32 or float16, got {dtype}")
    N, C, h, w = arr.shape
    H, W = (int(s) for s in size)
    if H < 1 or W < 1 or 0 in arr.shape:
        raise RtsegError(f"cannot upsample logits of shape {arr.shape} to {H}x{W}")
    if max(h, w, H, W) >= 2**24:
        raise RtsegError("sizes must be below 2^24 (the pixel coordinates are float32)")
    ldt = label_dtype(C)
    out_shape = (H, W) if squeeze else (N, H, W)
    labels = out if out is not None else _empty_like_device(logits, out_shape, ldt)
    lab = as_device_array(labels)
    _check_output(lab, out_shape, ldt, "out")
    sc_arr = None
    if return_score or score is not None:
        score = score if score is not None else _empty_like_device(logits, out_shape, np.dtype(np.float32))
        sc_arr = as_device_array(score)
        _check_output(sc_arr, out_shape, np.dtype(np.float32), "score")
    device, s = _prepare("upsample_argmax", stream, logits, logits=arr, out=lab, score=sc_arr)
    tname = "f32" if dtype == np.float32 else "f16"
    lname = "u8" if ldt == np.uint8 else "i32"
    sN, sC, sY, sX = arr.element_strides
    common = [_ptr(arr.ptr), _i64(sN), _i64(sC), _i64(sY), _i64(sX), _i32(N), _i32(C), _i32(h), _i32(w)]
    with _Scratch(N * h * w * 4, device, s) as lowarg:
        _launch(f"rtseg_lowres_argmax_{tname}", device, N * h * w, s, [*common, _ptr(lowarg)])
        _launch(f"rtseg_upsample_argmax_{tname}_{lname}", device, N * H * W, s,
                [*common, _i32(H), _i32(W), _i32(bool(align_corners)), _ptr(lowarg), _ptr(lab.ptr),
                 _ptr(sc_arr.ptr if sc_arr is not None else 0)])
    return (labels, score) if sc_arr is not None else labels


class _Normalisation(ctypes.Structure):
    _fields_ = [("mean", ctypes.c_float * 3), ("stdv", ctypes.c_float * 3), ("pixel_range", ctypes.c_float),
                ("rgb", ctypes.c_int)]


class _Palette(ctypes.Structure):
    _fields_ = [("colour", ctypes.c_ubyte * (_PALETTE_MAX * 3)), ("count", ctypes.c_int)]


def _palette_struct(palette: np.ndarray) -> _Palette:
    if len(palette) > _PALETTE_MAX:
        raise RtsegError(f"the CUDA overlay takes at most {_PALETTE_MAX} colours, got {len(palette)}")
    p = _Palette()
    flat = np.zeros(_PALETTE_MAX * 3, np.uint8)
    flat[: palette.size] = palette.reshape(-1)
    ctypes.memmove(p.colour, flat.ctypes.data, flat.size)
    p.count = len(palette)
    return p


def preprocess(frame: Any, size: tuple[int, int], mean, std, *, rgb: bool = True, pixel_range: float = 255.0,
               dtype=np.float32, out: Any = None, stream: Any = None):
    """CUDA twin of :func:`rtseg.kernels.preprocess`; frame is a (h, w, 3) uint8 device array."""
    from .cpu import preprocess_args  # the same checks and float32 rounding as the CPU twin

    arr = as_device_array(frame)
    (H, W), dtype, mean, std = preprocess_args(arr.shape, arr.dtype, size, dtype, mean, std)
    result = out if out is not None else _empty_like_device(frame, (1, 3, H, W), dtype)
    res = as_device_array(result)
    _check_output(res, (1, 3, H, W), dtype, "out")
    norm = _Normalisation()
    norm.mean[:] = mean
    norm.stdv[:] = std
    norm.pixel_range = float(pixel_range)
    norm.rgb = int(bool(rgb))
    device, s = _prepare("preprocess", stream, frame, frame=arr, out=res)
    sY, sX, sC = arr.element_strides
    _launch(f"rtseg_preprocess_{'f32' if dtype == np.float32 else 'f16'}", device, H * W, s,
            [_ptr(arr.ptr), _i64(sY), _i64(sX), _i64(sC), _i32(arr.shape[0]), _i32(arr.shape[1]), _i32(H), _i32(W),
             norm, _ptr(res.ptr)])
    return result


_LABEL_SUFFIX = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.int32): "i32",
                 np.dtype(np.int64): "i64"}


def _label_suffix(arr: DeviceArray) -> str:
    suffix = _LABEL_SUFFIX.get(np.dtype(arr.dtype))
    if suffix is None:
        raise RtsegError(f"labels must be uint8, uint16, int32 or int64, got {np.dtype(arr.dtype)}")
    return suffix


def overlay(frame: Any, labels: Any, palette: np.ndarray, alpha256: int, out: Any = None, stream: Any = None):
    """CUDA twin of :func:`rtseg.kernels.overlay`; palette is a host (K, 3) uint8 array (K <= 256)."""
    fr, lab = as_device_array(frame), as_device_array(labels)
    if len(fr.shape) != 3 or fr.shape[2] != 3 or np.dtype(fr.dtype) != np.uint8:
        raise RtsegError(f"frame must be uint8 (H, W, 3), got {np.dtype(fr.dtype)} {fr.shape}")
    if len(lab.shape) != 2 or 0 in lab.shape:
        raise RtsegError(f"labels must be a non-empty (h, w) array, got shape {lab.shape}")
    if not 0 <= int(alpha256) <= 256:
        raise RtsegError(f"alpha256 must be in [0, 256], got {alpha256}")
    H, W = fr.shape[:2]
    result = out if out is not None else _empty_like_device(frame, (H, W, 3), np.dtype(np.uint8))
    res = as_device_array(result)
    _check_output(res, (H, W, 3), np.dtype(np.uint8), "out")
    device, s = _prepare("overlay", stream, frame, frame=fr, labels=lab, out=res)
    fY, fX, fC = fr.element_strides
    lY, lX = lab.element_strides
    _launch(f"rtseg_overlay_{_label_suffix(lab)}", device, H * W, s,
            [_ptr(fr.ptr), _i64(fY), _i64(fX), _i64(fC), _ptr(lab.ptr), _i64(lY), _i64(lX), _i32(lab.shape[0]),
             _i32(lab.shape[1]), _i32(H), _i32(W), _palette_struct(palette), _i32(alpha256), _ptr(res.ptr)])
    return result


def colorize(labels: Any, palette: np.ndarray, out: Any = None, stream: Any = None):
    """CUDA twin of :func:`rtseg.kernels.colorize`."""
    lab = as_device_array(labels)
    if len(lab.shape) != 2:
        raise RtsegError(f"labels must be (H, W), got shape {lab.shape}")
    H, W = lab.shape
    result = out if out is not None else _empty_like_device(labels, (H, W, 3), np.dtype(np.uint8))
    res = as_device_array(result)
    _check_output(res, (H, W, 3), np.dtype(np.uint8), "out")
    device, s = _prepare("colorize", stream, labels, labels=lab, out=res)
    lY, lX = lab.element_strides
    _launch(f"rtseg_colorize_{_label_suffix(lab)}", device, H * W, s,
            [_ptr(lab.ptr), _i64(lY), _i64(lX), _i32(H), _i32(W), _palette_struct(palette), _ptr(res.ptr)])
    return result


@functools.cache
def available() -> str | None:
    """None when the CUDA kernels can run here (driver, GPU and NVRTC all present), else why not."""
    try:
        if device_count() < 1:
            return "no NVIDIA GPU"
        nvrtc.nvrtc_version()
    except RtsegError as exc:
        return str(exc)
    return None
