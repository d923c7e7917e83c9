"""CUDA face of the kernels: cpp_ext/kernels.cu compiled at run time with NVRTC, launched with the driver API.

Why run-time compilation: the wheel stays pure Python plus a small CPU extension, and the cubin is built for the
exact GPU it runs on. The cubin is cached on disk (key: sha256 of the sources, architecture, options and NVRTC
version; atomic write), so the compile (~1 s) happens once per machine.

Launches take device pointers from PyTorch CUDA tensors (``data_ptr()``), from anything exposing
``__cuda_array_interface__`` (CuPy, Numba, ...), or from a :class:`DeviceArray` wrapping raw memory such as a
``cuda.core`` Buffer. They go on the caller's stream (PyTorch's current stream by default) and never synchronise
the host. Scratch memory comes from the stream-ordered allocator (cuMemAllocAsync / cuMemFreeAsync).

Everything here imports cuda-python lazily: ``import rtseg.kernels`` works without it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RtsegError, missing_dependency

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
#: the architectures the compile test covers (Turing to Hopper)
SUPPORTED_ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
#: --fmad=false: only the fused multiply-adds written out in rtseg_pixel.h, so the CPU twin matches bit for bit
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false", "-default-device")
_SOURCE_FILES = ("kernels.cu", "rtseg_pixel.h")
_BLOCK = 256
_PALETTE_MAX = 256


# ---------------------------------------------------------------------------------------------------------------
# Sources and compilation


def source_dir() -> Path:
    """Where kernels.cu lives: inside the installed package, else the checkout's cpp_ext/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "cuda_src", here.parents[1] / "cpp_ext"):
        if (candidate / "kernels.cu").is_file():
            return candidate
    raise RtsegError("the CUDA sources (kernels.cu) are missing from this installation; reinstall rtseg")


def _sources() -> dict[str, bytes]:
    folder = source_dir()
    return {name: (folder / name).read_bytes() for name in _SOURCE_FILES}


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise missing_dependency("cuda-python (cuda.bindings)", "gpu") from exc
    return nvrtc


def _check_nvrtc(result, what: str, program=None) -> None:
    nvrtc = _nvrtc()
    if result == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return
    log = ""
    if program is not None:
        err, size = nvrtc.nvrtcGetProgramLogSize(program)
        if err == nvrtc.nvrtcResult.NVRTC_SUCCESS and size > 1:
            buf = b" " * size
            nvrtc.nvrtcGetProgramLog(program, buf)
            log = buf.decode(errors="replace").strip()
    raise RtsegError(f"NVRTC {what} failed ({result.name}){': ' + log if log else ''}")


def nvrtc_version() -> tuple[int, int]:
    nvrtc = _nvrtc()
    err, major, minor = nvrtc.nvrtcVersion()
    _check_nvrtc(err, "version query")
    return int(major), int(minor)


def cache_dir() -> Path:
    """The cubin cache: $RTSEG_CACHE_DIR, else the user cache directory."""
    if env := os.environ.get("RTSEG_CACHE_DIR"):
        return Path(env) / "cubin"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "rtseg" / "cubin"


def _cache_key(sources: dict[str, bytes], arch: str, options: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name] + b"\0")
    digest.update(arch.encode() + b"\0" + "\0".join(options).encode() + b"\0")
    digest.update(("nvrtc %d.%d" % nvrtc_version()).encode())
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_cubin(arch: str, *, use_cache: bool = True) -> bytes:
    """Compile kernels.cu to a cubin for ``arch`` (e.g. ``"sm_86"``), through the disk cache."""
    sources = _sources()
    key = _cache_key(sources, arch, NVRTC_OPTIONS)
    cached = cache_dir() / f"kernels-{arch}-{key[:32]}.cubin"
    if use_cache and cached.is_file():
        return cached.read_bytes()
    cubin = _nvrtc_compile(sources, arch)
    if use_cache:
        try:
            _atomic_write(cached, cubin)
        except OSError:  # a read-only home still runs, it just recompiles next time
            pass
    return cubin


def _nvrtc_compile(sources: dict[str, bytes], arch: str) -> bytes:
    nvrtc = _nvrtc()
    headers = [name for name in sources if name != "kernels.cu"]
    err, program = nvrtc.nvrtcCreateProgram(
        sources["kernels.cu"], b"kernels.cu", len(headers), [sources[h] for h in headers], [h.encode() for h in headers]
    )
    _check_nvrtc(err, "program creation")
    try:
        options = [*(o.encode() for o in NVRTC_OPTIONS), f"--gpu-architecture={arch}".encode()]
        (err,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        _check_nvrtc(err, f"compilation for {arch}", program)
        err, size = nvrtc.nvrtcGetCUBINSize(program)
        _check_nvrtc(err, "cubin size query")
        cubin = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(program, cubin)
        _check_nvrtc(err, "cubin retrieval")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(program)


# ---------------------------------------------------------------------------------------------------------------
# Driver: context, module, launch


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise missing_dependency("cuda-python (cuda.bindings)", "gpu") from exc
    return driver


def _check(result, what: str) -> Any:
    """Unpack a cuda.bindings driver result tuple, raising RtsegError on failure."""
    driver = _driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(err)
        raise RtsegError(f"CUDA {what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


_lock = threading.Lock()
_modules: dict[int, tuple[Any, dict[str, Any]]] = {}  # context handle -> (module, functions)


def _current_context(device: int):
    """The calling thread's current context, else device's primary context made current (what PyTorch uses)."""
    driver = _driver()
    _check(driver.cuInit(0), "initialisation")
    ctx = _check(driver.cuCtxGetCurrent(), "context query")
    if int(ctx) == 0:
        dev = _check(driver.cuDeviceGet(device), "device query")
        ctx = _check(driver.cuDevicePrimaryCtxRetain(dev), "primary context")
        _check(driver.cuCtxSetCurrent(ctx), "context activation")
    return ctx


def device_arch(device: int = 0) -> str:
    driver = _driver()
    _check(driver.cuInit(0), "initialisation")
    dev = _check(driver.cuDeviceGet(device), "device query")
    attr = driver.CUdevice_attribute
    major = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "arch")
    minor = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "arch")
    return f"sm_{major}{minor}"


def _function(name: str, device: int):
    ctx = _current_context(device)
    key = int(ctx)
    with _lock:
        entry = _modules.get(key)
        if entry is None:
            driver = _driver()
            dev = _check(driver.cuCtxGetDevice(), "device query")
            cubin = compile_cubin(device_arch(int(dev)))
            module = _check(driver.cuModuleLoadData(cubin), "module load")
            entry = (module, {})
            _modules[key] = entry
        module, functions = entry
        fn = functions.get(name)
        if fn is None:
            fn = _check(_driver().cuModuleGetFunction(module, name.encode()), f"lookup of {name}")
            functions[name] = fn
        return fn


def _launch(name: str, device: int, count: int, stream: int, args: list) -> None:
    """Launch ``name`` with one thread per item on ``stream``; args are ctypes values, kept alive for the call."""
    if count <= 0:
        return
    driver = _driver()
    fn = _function(name, device)
    pointers = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
    grid = (count + _BLOCK - 1) // _BLOCK
    _check(
        driver.cuLaunchKernel(fn, grid, 1, 1, _BLOCK, 1, 1, 0, driver.CUstream(stream), ctypes.addressof(pointers), 0),
        f"launch of {name}",
    )


class _Scratch:
    """Stream-ordered device scratch memory: allocated and freed on the stream, no host synchronisation."""

    def __init__(self, nbytes: int, stream: int):
        driver = _driver()
        self.stream = stream
        self.ptr = _check(driver.cuMemAllocAsync(max(nbytes, 1), driver.CUstream(stream)), "scratch allocation")

    def __enter__(self) -> int:
        return int(self.ptr)

    def __exit__(self, *exc) -> None:
        driver = _driver()
        _check(driver.cuMemFreeAsync(self.ptr, driver.CUstream(self.stream)), "scratch release")


# ---------------------------------------------------------------------------------------------------------------
# Device arrays


@dataclass(frozen=True)
class DeviceArray:
    """A strided view of device memory: pointer, shape, element strides, NumPy dtype, device ordinal.

    Wrap raw allocations (a ``cuda.core`` Buffer's ``handle``, a cuMemAlloc pointer) to pass them to the kernels;
    PyTorch tensors and ``__cuda_array_interface__`` objects are converted automatically.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...] | None = None  # elements; None means C-contiguous
    device: int = 0

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
    def __cuda_array_interface__(self) -> dict:
        itemsize = np.dtype(self.dtype).itemsize
        strides = None if self.strides is None else tuple(s * itemsize for s in self.strides)
        return {"shape": self.shape, "typestr": np.dtype(self.dtype).str, "data": (self.ptr, False),
                "strides": strides, "version": 3}


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
    return DeviceArray(int(cai["data"][0]), tuple(cai["shape"]), dtype, strides, _pointer_device(int(cai["data"][0])))


def _pointer_device(ptr: int) -> int:
    driver = _driver()
    attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    try:
        return int(_check(driver.cuPointerGetAttribute(attr, ptr), "pointer query"))
    except RtsegError:
        return 0


def default_stream(like: Any = None) -> int:
    """PyTorch's current stream when torch is loaded and CUDA is initialised, else the legacy default stream."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        device = like.device if isinstance(like, torch.Tensor) and like.is_cuda else None
        return int(torch.cuda.current_stream(device).cuda_stream)
    return 0


def stream_handle(stream: Any, like: Any = None) -> int:
    """Accepts None (default_stream), an int handle, a torch.cuda.Stream, a cuda.core Stream or CUstream."""
    if stream is None:
        return default_stream(like)
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
        return int(stream.cuda_stream)
    if hasattr(stream, "__cuda_stream__"):  # cuda.core Stream protocol: (version, handle)
        return int(stream.__cuda_stream__()[1])
    if hasattr(stream, "handle"):
        return int(stream.handle)
    return int(stream)  # CUstream


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
        arr = DeviceArray(arr.ptr, (1, *arr.shape), arr.dtype, (0, *arr.element_strides), arr.device)
    if len(arr.shape) != 4:
        raise RtsegError(f"logits must be (N, C, h, w) or (C, h, w), got shape {arr.shape}")
    dtype = np.dtype(arr.dtype)
    if dtype not in (np.float32, np.float16):
        raise RtsegError(f"logits must be float32 or float16, got {dtype}")
    N, C, h, w = arr.shape
    H, W = (int(s) for s in size)
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
    s = stream_handle(stream, logits)
    tname = "f32" if dtype == np.float32 else "f16"
    lname = "u8" if ldt == np.uint8 else "i32"
    sN, sC, sY, sX = arr.element_strides
    common = [_ptr(arr.ptr), _i64(sN), _i64(sC), _i64(sY), _i64(sX), _i32(N), _i32(C), _i32(h), _i32(w)]
    with _Scratch(N * h * w * 4, s) as lowarg:
        _launch(f"rtseg_lowres_argmax_{tname}", arr.device, N * h * w, s, [*common, _ptr(lowarg)])
        _launch(f"rtseg_upsample_argmax_{tname}_{lname}", arr.device, N * H * W, s,
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
    arr = as_device_array(frame)
    if len(arr.shape) != 3 or arr.shape[2] != 3 or np.dtype(arr.dtype) != np.uint8:
        raise RtsegError(f"frame must be uint8 (H, W, 3), got {np.dtype(arr.dtype)} {arr.shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise RtsegError(f"dtype must be float32 or float16, got {dtype}")
    H, W = (int(s) for s in size)
    result = out if out is not None else _empty_like_device(frame, (1, 3, H, W), dtype)
    res = as_device_array(result)
    _check_output(res, (1, 3, H, W), dtype, "out")
    norm = _Normalisation()
    norm.mean[:] = [float(np.float32(m)) for m in mean]
    norm.stdv[:] = [float(np.float32(v)) for v in std]
    norm.pixel_range = float(pixel_range)
    norm.rgb = int(bool(rgb))
    s = stream_handle(stream, frame)
    sY, sX, sC = arr.element_strides
    _launch(f"rtseg_preprocess_{'f32' if dtype == np.float32 else 'f16'}", arr.device, H * W, s,
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
    if len(lab.shape) != 2:
        raise RtsegError(f"labels must be (h, w), got shape {lab.shape}")
    H, W = fr.shape[:2]
    result = out if out is not None else _empty_like_device(frame, (H, W, 3), np.dtype(np.uint8))
    res = as_device_array(result)
    _check_output(res, (H, W, 3), np.dtype(np.uint8), "out")
    s = stream_handle(stream, frame)
    fY, fX, fC = fr.element_strides
    lY, lX = lab.element_strides
    _launch(f"rtseg_overlay_{_label_suffix(lab)}", fr.device, H * W, s,
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
    s = stream_handle(stream, labels)
    lY, lX = lab.element_strides
    _launch(f"rtseg_colorize_{_label_suffix(lab)}", lab.device, H * W, s,
            [_ptr(lab.ptr), _i64(lY), _i64(lX), _i32(H), _i32(W), _palette_struct(palette), _ptr(res.ptr)])
    return result


@functools.cache
def available() -> str | None:
    """None when the CUDA kernels can run here, else why not."""
    try:
        driver = _driver()
        _nvrtc()
    except RtsegError as exc:
        return str(exc)
    err = driver.cuInit(0)[0]
    if err != driver.CUresult.CUDA_SUCCESS:
        return "no usable CUDA driver"
    err, count = driver.cuDeviceGetCount()
    if err != driver.CUresult.CUDA_SUCCESS or count < 1:
        return "no NVIDIA GPU"
    return None
