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

import contextlib
import ctypes
import functools
import hashlib
import sys
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
#: Only options every NVRTC since CUDA 11 knows (its default dialect is C++17 and the sources need no more).
#: --fmad=false: only the fused multiply-adds written out in rtseg_pixel.h, so the CPU twin matches bit for bit;
#: --ftz/--prec-div spell out NVRTC's defaults, which the bit-exactness rests on.
NVRTC_OPTIONS: tuple[str, ...] = ("--fmad=false", "--ftz=false", "--prec-div=true")
_SOURCE_FILES = ("kernels.cu", "rtseg_pixel.h")
_BLOCK = 256
_PALETTE_MAX = 256


# ---------------------------------------------------------------------------------------------------------------
# Sources and compilation


def source_dir() -> Path:
    """Where kernels.cu lives: the checkout's cpp_ext/ when running from one (so an editable install never reads a
    stale copy), else the copy build_py ships inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "cpp_ext", here / "cuda_src"):
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
            log = buf.rstrip(b"\0").decode(errors="replace").strip()
    raise RtsegError(f"NVRTC {what} failed ({result.name}){': ' + log if log else ''}")


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor); the first NVRTC call, so a missing libnvrtc surfaces here as one clear error."""
    nvrtc = _nvrtc()
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # noqa: BLE001 - the loader raises RuntimeError or its own error types
        why = " ".join(str(exc).split())
        raise RtsegError(
            f"NVRTC could not be loaded ({why}); install it with pip install nvidia-cuda-nvrtc-cu12 (its cubins "
            "run on any driver from CUDA 12 on), or put a CUDA toolkit's lib64 on LD_LIBRARY_PATH"
        ) from exc
    _check_nvrtc(err, "version query")
    return int(major), int(minor)


@functools.cache
def nvrtc_archs() -> tuple[int, ...]:
    """The sm_XX numbers this NVRTC can compile for (empty when it cannot say)."""
    nvrtc = _nvrtc()
    nvrtc_version()
    try:
        err, archs = nvrtc.nvrtcGetSupportedArchs()
    except Exception:  # noqa: BLE001 - an NVRTC too old to list them
        return ()
    return tuple(sorted(int(a) for a in archs)) if err == nvrtc.nvrtcResult.NVRTC_SUCCESS else ()


def compile_target(arch: str) -> str:
    """What to ask NVRTC for on a device of ``arch`` (e.g. ``"sm_90"``).

    The device's own cubin when this NVRTC knows the architecture; else PTX for the newest virtual architecture
    NVRTC knows below it (``"compute_XX"``), which the driver compiles for the device when it loads the module.
    """
    want = int(arch.removeprefix("sm_"))
    known = nvrtc_archs()
    if not known or want in known:
        return f"sm_{want}"
    older = [a for a in known if a <= want]
    if not older:
        major, minor = nvrtc_version()
        raise RtsegError(f"NVRTC {major}.{minor} cannot compile for {arch} (it knows sm_{known[0]} and newer); "
                         "install an NVRTC of the CUDA version your driver supports")
    return f"compute_{max(older)}"


def cache_dir() -> Path:
    """The cubin cache: ``cubin`` under rtseg's cache folder (:func:`rtseg.files.cache_dir`)."""
    from ..files import cache_dir as rtseg_cache_dir

    return rtseg_cache_dir("cubin")


def _cache_key(sources: dict[str, bytes], arch: str, options: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name] + b"\0")
    digest.update(arch.encode() + b"\0" + "\0".join(options).encode() + b"\0")
    digest.update(("nvrtc %d.%d" % nvrtc_version()).encode())
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    from ..files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def compile_cubin(arch: str, *, use_cache: bool = True) -> bytes:
    """Compile kernels.cu for ``arch`` through the disk cache: a cubin for ``"sm_XX"``, NUL-terminated PTX for
    ``"compute_XX"`` (both are what cuModuleLoadData takes)."""
    sources = _sources()
    key = _cache_key(sources, arch, NVRTC_OPTIONS)
    suffix = "ptx" if arch.startswith("compute_") else "cubin"
    cached = cache_dir() / f"kernels-{arch}-{key[:32]}.{suffix}"
    if use_cache and cached.is_file():
        return cached.read_bytes()
    image = _nvrtc_compile(sources, arch)
    if use_cache:
        try:
            _atomic_write(cached, image)
        except OSError:  # a read-only home still runs, it just recompiles next time
            pass
    return image


def _nvrtc_compile(sources: dict[str, bytes], arch: str) -> bytes:
    nvrtc = _nvrtc()
    nvrtc_version()
    ptx = arch.startswith("compute_")
    headers = [name for name in sources if name != "kernels.cu"]
    err, program = nvrtc.nvrtcCreateProgram(
        sources["kernels.cu"], b"kernels.cu", len(headers), [sources[h] for h in headers], [h.encode() for h in headers]
    )
    _check_nvrtc(err, "program creation")
    try:
        options = [*(o.encode() for o in NVRTC_OPTIONS), f"--gpu-architecture={arch}".encode()]
        (err,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        _check_nvrtc(err, f"compilation for {arch}", program)
        get_size, get = (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if ptx else (nvrtc.nvrtcGetCUBINSize,
                                                                              nvrtc.nvrtcGetCUBIN)
        err, size = get_size(program)
        _check_nvrtc(err, "output size query")
        image = b" " * size  # NVRTC writes into this buffer; PTX comes NUL-terminated, as cuModuleLoadData wants
        (err,) = get(program, image)
        _check_nvrtc(err, "output retrieval")
        return image
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
    """Unpack a cuda.bindings driver result tuple ``(CUresult, *values)``, raising RtsegError on failure."""
    driver = _driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(err)
        raise RtsegError(f"CUDA {what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


@functools.cache
def _init() -> None:
    """cuInit, once; a machine without the NVIDIA driver library gets an RtsegError, not a loader exception."""
    driver = _driver()
    try:
        result = driver.cuInit(0)
    except Exception as exc:  # noqa: BLE001 - cuda-python raises its loader's own error types
        raise RtsegError(f"the NVIDIA driver (libcuda) could not be loaded: {exc}") from exc
    _check(result, "initialisation")


@functools.cache
def driver_version() -> tuple[int, int]:
    """The CUDA version the installed driver supports, as (major, minor)."""
    _init()
    version = int(_check(_driver().cuDriverGetVersion(), "driver version query"))
    return version // 1000, version % 1000 // 10


_lock = threading.RLock()
_modules: dict[int, tuple[Any, dict[str, Any]]] = {}  # context handle -> (module, functions)
_primary: dict[int, Any] = {}  # device ordinal -> its retained primary context
_context_devices: dict[int, int] = {}  # context handle -> its CUdevice, so launches skip the query


def _primary_context(device: int):
    with _lock:
        ctx = _primary.get(device)
        if ctx is None:
            driver = _driver()
            dev = _check(driver.cuDeviceGet(device), "device query")
            ctx = _primary[device] = _check(driver.cuDevicePrimaryCtxRetain(dev), "primary context")
        return ctx


@functools.cache
def _device_handle(device: int) -> int:
    return int(_check(_driver().cuDeviceGet(device), "device query"))


def _current_context(device: int):
    """Make sure this thread has a current context; with none, device's primary context (the one PyTorch and the
    runtime API use) becomes current, as the runtime would do. Returns the current context."""
    _init()
    driver = _driver()
    ctx = _check(driver.cuCtxGetCurrent(), "context query")
    if int(ctx) == 0:
        ctx = _primary_context(device)
        _check(driver.cuCtxSetCurrent(ctx), "context activation")
    return ctx


@contextlib.contextmanager
def _on_device(device: int):
    """Run the block with a context of ``device`` current: the thread's own when it is on that device, else the
    device's primary context pushed for the block only (the caller's current device is left as it was)."""
    ctx = _current_context(device)
    driver = _driver()
    owner = _context_devices.get(int(ctx))
    if owner is None:
        owner = _context_devices[int(ctx)] = int(_check(driver.cuCtxGetDevice(), "device query"))
    if owner == _device_handle(device):
        yield ctx
        return
    ctx = _primary_context(device)
    _check(driver.cuCtxPushCurrent(ctx), "context activation")
    try:
        yield ctx
    finally:
        _check(driver.cuCtxPopCurrent(), "context release")


def device_arch(device: int = 0) -> str:
    _init()
    driver = _driver()
    dev = _check(driver.cuDeviceGet(device), "device query")
    attr = driver.CUdevice_attribute
    major = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "arch")
    minor = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "arch")
    return f"sm_{major}{minor}"


def _load_module(device: int):
    """The kernels as a module of the current context: compiled (or read from the cache) for device's arch."""
    driver = _driver()
    target = compile_target(device_arch(device))
    result = driver.cuModuleLoadData(compile_cubin(target))
    if result[0] != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(result[0])
        name = name.decode() if isinstance(name, bytes) else name
        (nv_major, nv_minor), (drv_major, drv_minor) = nvrtc_version(), driver_version()
        hint = ""
        if (nv_major, nv_minor) > (drv_major, drv_minor):
            hint = (f"; NVRTC {nv_major}.{nv_minor} is newer than the CUDA {drv_major}.{drv_minor} this driver "
                    f"supports: update the driver, or use an NVRTC of CUDA {drv_major} (pip install "
                    f"nvidia-cuda-nvrtc-cu{drv_major}, with cuda-python {drv_major}.x so that it is the one loaded)")
        raise RtsegError(f"CUDA module load ({target}, NVRTC {nv_major}.{nv_minor}) failed: {name}{hint}")
    return result[1]


def _function(name: str, device: int, ctx):
    """The CUfunction ``name`` in ``ctx``, the current context (loading the module on first use there)."""
    driver = _driver()
    key = int(ctx)
    with _lock:
        entry = _modules.get(key)
        if entry is None:
            entry = _modules[key] = (_load_module(device), {})
        module, functions = entry
        fn = functions.get(name)
        if fn is None:
            fn = functions[name] = _check(driver.cuModuleGetFunction(module, name.encode()), f"lookup of {name}")
        return fn


class _Driver:
    """The real device behind the kernel wrappers: launches and scratch memory through the driver API.

    The wrappers only call these three methods, so a test can put a CPU emulation of the device in its place.
    """

    def launch(self, name: str, device: int, grid: int, block: int, stream: int, args: list) -> None:
        """Launch ``name`` on ``stream`` with ``args`` (ctypes values, one per kernel parameter)."""
        driver = _driver()
        params = kernel_params(args)
        with _on_device(device) as ctx:
            fn = _function(name, device, ctx)
            # kernelParams as an int: the address of a void*[] (the C API's form); the driver copies each
            # parameter's bytes (size from the cubin) before cuLaunchKernel returns, so `params` may die after.
            _check(driver.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, driver.CUstream(stream),
                                         ctypes.addressof(params), 0), f"launch of {name}")

    def alloc(self, nbytes: int, device: int, stream: int) -> int:
        """Stream-ordered allocation, from rtseg's own pool (so the default pool's settings stay the caller's)."""
        driver = _driver()
        with _on_device(device):
            pool = _scratch_pool(device)
            if pool is not None:
                return int(_check(driver.cuMemAllocFromPoolAsync(nbytes, pool, driver.CUstream(stream)),
                                  "scratch allocation"))
            return int(_check(driver.cuMemAllocAsync(nbytes, driver.CUstream(stream)), "scratch allocation"))

    def free(self, ptr: int, device: int, stream: int) -> None:
        driver = _driver()
        with _on_device(device):
            _check(driver.cuMemFreeAsync(driver.CUdeviceptr(ptr), driver.CUstream(stream)), "scratch release")


_device: Any = _Driver()


@functools.cache
def _scratch_pool(device: int):
    """A memory pool that keeps what it reserved (release threshold: all), so per-frame scratch allocations do
    not go back to the OS at every synchronisation as the default pool's do; None (use the default pool) if the
    pool cannot be made here."""
    driver = _driver()
    try:
        props = driver.CUmemPoolProps()
        props.allocType = driver.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
        props.location.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        props.location.id = device
        pool = _check(driver.cuMemPoolCreate(props), "memory pool creation")
        _check(driver.cuMemPoolSetAttribute(pool, driver.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                                            driver.cuuint64_t(2**64 - 1)), "memory pool setup")
        return pool
    except Exception:  # noqa: BLE001 - a driver without pools for this device: the default pool still works
        return None


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
    """The ordinal of the device that owns ``ptr`` (0 when the driver cannot tell)."""
    driver = _driver()
    attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    try:
        _init()
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
    s = stream_handle(stream, logits)
    tname = "f32" if dtype == np.float32 else "f16"
    lname = "u8" if ldt == np.uint8 else "i32"
    sN, sC, sY, sX = arr.element_strides
    common = [_ptr(arr.ptr), _i64(sN), _i64(sC), _i64(sY), _i64(sX), _i32(N), _i32(C), _i32(h), _i32(w)]
    with _Scratch(N * h * w * 4, arr.device, s) as lowarg:
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
    if len(lab.shape) != 2 or 0 in lab.shape:
        raise RtsegError(f"labels must be a non-empty (h, w) array, got shape {lab.shape}")
    if not 0 <= int(alpha256) <= 256:
        raise RtsegError(f"alpha256 must be in [0, 256], got {alpha256}")
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
    """None when the CUDA kernels can run here (driver, GPU and NVRTC all present), else why not."""
    try:
        _init()
        if int(_check(_driver().cuDeviceGetCount(), "device count")) < 1:
            return "no NVIDIA GPU"
        nvrtc_version()
    except RtsegError as exc:
        return str(exc)
    return None
