"""The CUDA path without a GPU: launch ABI, NVRTC targets, and the kernels' own code run on the CPU.

What the driver will see is checked against the compiled cubin itself: each kernel's parameter table (sizes, in
order, from the ELF's .nv.info sections) must equal the ctypes values the Python wrappers pass, since
cuLaunchKernel copies exactly those many bytes from each pointer. Then cpp_ext/kernels.cu is built with the host
C++ compiler (tests/kernels/cuda_emulation.h) and stands in for the device behind ``cuda._device``: the wrappers
run unchanged (validation, scratch, argument packing), the kernels run thread by thread, and their outputs must
equal the CPU twins bit for bit. The real-device run of the same comparisons is tests/kernels/test_cuda_gpu.py.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python is not installed (pip install 'rtseg[gpu]')")

import rtseg.kernels as K  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402
from rtseg.kernels import cubin as nvrtc  # noqa: E402
from rtseg.kernels import cuda  # noqa: E402

HERE = Path(__file__).resolve().parent
EIATTR_KPARAM_INFO = 0x17


def cubin_param_sizes(cubin: bytes) -> dict[str, list[int]]:
    """{kernel: [parameter sizes in bytes, by ordinal]} from the EIATTR_KPARAM_INFO records of a cubin."""
    assert cubin[:4] == b"\x7fELF" and cubin[4] == 2, "not a 64-bit ELF"
    (shoff,) = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    result = {}
    for name_off, _, _, _, offset, size, *_ in headers:
        name = cubin[names_at + name_off: cubin.index(b"\0", names_at + name_off)].decode()
        if not name.startswith(".nv.info."):
            continue
        body, params, i = cubin[offset: offset + size], {}, 0
        while i < len(body):
            fmt, attr = body[i], body[i + 1]
            if fmt == 4:  # EIFMT_SVAL: u16 length, then the payload
                (length,) = struct.unpack_from("<H", body, i + 2)
                if attr == EIATTR_KPARAM_INFO:  # u32 index, u16 ordinal, u16 offset, u32 flags (size in bits 18+)
                    _, ordinal, _, flags = struct.unpack_from("<IHHI", body, i + 4)
                    params[ordinal] = (flags >> 18) & 0x3FFF
                i += 4 + length
            else:  # EIFMT_NVAL / BVAL / HVAL: four bytes in all
                i += 4
        result[name.removeprefix(".nv.info.")] = [params[k] for k in sorted(params)]
    return result


@pytest.fixture(scope="module")
def device_params() -> dict[str, list[int]]:
    return cubin_param_sizes(nvrtc.compile_cubin("sm_90", use_cache=False))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """kernels.cu built for the host, with rtseg_emulate(name, grid, block, void** params) as its launcher."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no host C++ compiler to build the kernel emulation")
    folder = tmp_path_factory.mktemp("emulation")
    dispatch = "\n".join(
        f'    if (!std::strcmp(name, "{k}")) return run(&{k}, grid, block, params, sizes);' for k in cuda.KERNEL_NAMES
    )
    (folder / "emulate.cpp").write_text(f"""
#include <cstring>
#include <type_traits>
#include <utility>
#include "cuda_emulation.h"
#include "kernels.cu"

template <class... A, std::size_t... I>
static void call(void (*f)(A...), void** p, std::index_sequence<I...>) {{
    f(*static_cast<std::decay_t<A>*>(p[I])...);
}}

// With params: every block and thread of the grid, one after another. Always: the C++ parameter sizes.
template <class... A>
static int run(void (*f)(A...), unsigned grid, unsigned block, void** params, long long* sizes) {{
    const long long s[] = {{(long long)sizeof(A)...}};
    for (unsigned k = 0; k < sizeof...(A); ++k) sizes[k] = s[k];
    blockDim.x = block;
    for (unsigned b = 0; params && b < grid; ++b) {{
        blockIdx.x = b;
        for (unsigned t = 0; t < block; ++t) {{
            threadIdx.x = t;
            call(f, params, std::index_sequence_for<A...>{{}});
        }}
    }}
    return (int)sizeof...(A);
}}

extern "C" int rtseg_emulate(const char* name, unsigned grid, unsigned block, void** params, long long* sizes) {{
{dispatch}
    return -1;
}}
""")
    library = folder / "emulate.so"
    source_dir = nvrtc.source_dir()
    subprocess.run([compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{source_dir}",
                    f"-I{HERE}", str(folder / "emulate.cpp"), "-o", str(library)], check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.rtseg_emulate.restype = ctypes.c_int
    lib.rtseg_emulate.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                  ctypes.POINTER(ctypes.c_longlong)]
    return lib


class EmulatedDevice:
    """Stands in for cuda._Driver: host memory for scratch, kernels.cu run on the CPU for launches, and every
    launch's ctypes arguments checked against the cubin's parameter table."""

    def __init__(self, lib, device_params: dict[str, list[int]]):
        self.lib, self.device_params = lib, device_params
        self.memory: dict[int, np.ndarray] = {}
        self.launched: list[str] = []
        self.events: list[tuple] = []  # ("launch", name, device, stream) and ("wait", stream, others, device)

    def launch(self, name, device, grid, block, stream, args):
        assert [ctypes.sizeof(a) for a in args] == self.device_params[name], f"{name}: arguments differ from cubin"
        params = cuda.kernel_params(args)
        sizes = (ctypes.c_longlong * 32)()
        assert self.lib.rtseg_emulate(name.encode(), grid, block, ctypes.addressof(params), sizes) == len(args)
        self.launched.append(name)
        self.events.append(("launch", name, device, stream))

    def alloc(self, nbytes, device, stream):
        buf = np.full(nbytes, 0xAB, np.uint8)  # garbage, as fresh device memory would be
        self.memory[buf.ctypes.data] = buf
        return buf.ctypes.data

    def free(self, ptr, device, stream):
        del self.memory[ptr]

    def wait(self, stream, others, device):
        self.events.append(("wait", stream, tuple(others), device))


@pytest.fixture
def emulated(monkeypatch, emulator, device_params):
    device = EmulatedDevice(emulator, device_params)
    monkeypatch.setattr(cuda, "_device", device)
    yield device
    assert not device.memory, "scratch memory was not released"


def on_device(host: np.ndarray, device: int = 0, stream: int | None = None) -> K.DeviceArray:
    """A DeviceArray over host memory (the emulated device's address space), keeping the array's strides."""
    strides = tuple(s // host.itemsize for s in host.strides)
    return K.DeviceArray(host.ctypes.data, host.shape, host.dtype, strides, device, stream)


class Exported:
    """A foreign device array: only ``__cuda_array_interface__`` (v3, with its producer's stream)."""

    def __init__(self, host: np.ndarray, stream: int | None):
        self.__cuda_array_interface__ = {"shape": host.shape, "typestr": host.dtype.str, "strides": host.strides,
                                         "data": (host.ctypes.data, False), "version": 3, "stream": stream}


# ---------------------------------------------------------------------------------------------------------------
# ABI


def test_every_kernel_has_the_same_parameters_on_device_and_host(device_params, emulator):
    assert sorted(device_params) == sorted(cuda.KERNEL_NAMES)
    for name in cuda.KERNEL_NAMES:
        sizes = (ctypes.c_longlong * 32)()
        count = emulator.rtseg_emulate(name.encode(), 0, 0, None, sizes)
        assert list(sizes[:count]) == device_params[name], name
    # spot checks of the table itself: pointers and i64 strides are 8 bytes, the structs travel whole
    assert device_params["rtseg_preprocess_f32"] == [8, 8, 8, 8, 4, 4, 4, 4, 32, 8]
    assert device_params["rtseg_colorize_u8"] == [8, 8, 8, 4, 4, 772, 8]
    assert ctypes.sizeof(cuda._Palette) == 772 and ctypes.sizeof(cuda._Normalisation) == 32


def test_kernel_params_point_at_each_arguments_bytes():
    args = [ctypes.c_longlong(-(2**40) - 3), ctypes.c_int(7), ctypes.c_void_p(0xDEADBEEF000), cuda._Normalisation()]
    args[3].stdv[2] = 0.25
    params = cuda.kernel_params(args)
    assert ctypes.c_longlong.from_address(params[0]).value == -(2**40) - 3
    assert ctypes.c_int.from_address(params[1]).value == 7
    assert ctypes.c_uint64.from_address(params[2]).value == 0xDEADBEEF000
    assert params[3] == ctypes.addressof(args[3]) and ctypes.c_float.from_address(params[3] + 20).value == 0.25


# ---------------------------------------------------------------------------------------------------------------
# NVRTC targets


def test_compile_target_is_the_device_cubin_or_ptx_for_the_newest_older_arch():
    known = nvrtc.nvrtc_archs()
    assert nvrtc.compile_target("sm_90") == "sm_90"
    if known:
        newest = max(known)
        assert nvrtc.compile_target(f"sm_{newest + 1}") == f"compute_{newest}"
        with pytest.raises(RtsegError, match="cannot compile"):
            nvrtc.compile_target(f"sm_{min(known) - 1}")


def test_ptx_fallback_compiles_every_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path))
    ptx = nvrtc.compile_cubin("compute_75")
    assert ptx.endswith(b"\0") and b".target sm_75" in ptx  # NUL-terminated, as cuModuleLoadData needs
    for name in cuda.KERNEL_NAMES:
        assert f".entry {name}(".encode() in ptx
    assert [p.suffix for p in (tmp_path / "cubin").iterdir()] == [".ptx"]


def test_available_explains_instead_of_raising():
    reason = cuda.available()
    assert reason is None or (isinstance(reason, str) and reason)


# ---------------------------------------------------------------------------------------------------------------
# The kernels' code, emulated on the CPU, against the CPU twins


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("case", [(2, 19, 16, 24, 64, 96), (1, 5, 7, 9, 31, 45), (1, 300, 6, 5, 13, 17),
                                  (1, 3, 10, 10, 7, 5), (1, 1, 4, 4, 9, 9), (1, 4, 8, 8, 8, 8)])
def test_upsample_argmax_kernel_matches_cpu_twin(emulated, case, align_corners, dtype):
    N, C, h, w, H, W = case
    rng = np.random.default_rng(sum(case))
    logits = rng.standard_normal((N, C, h, w)).astype(dtype)
    logits[..., ::3, ::2] = np.round(logits[..., ::3, ::2])  # exact ties between classes
    want, want_score = K.upsample_argmax(logits, (H, W), align_corners, return_score=True)
    labels = np.full((N, H, W), 77, K.label_dtype(C))
    score = np.zeros((N, H, W), np.float32)
    cuda.upsample_argmax(on_device(logits), (H, W), align_corners, out=on_device(labels), score=on_device(score),
                         stream=0)
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_array_equal(score, want_score)
    assert emulated.launched[0].startswith("rtseg_lowres_argmax_")


def test_upsample_argmax_kernel_strided_input_and_unbatched(emulated):
    logits = np.random.default_rng(1).standard_normal((1, 8, 12, 14)).astype(np.float32)
    channels_last = np.ascontiguousarray(logits.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # same values
    labels = np.zeros((1, 40, 50), np.uint8)
    K.upsample_argmax(on_device(channels_last), (40, 50), out=on_device(labels), stream=0)
    np.testing.assert_array_equal(labels, K.upsample_argmax(logits, (40, 50)))
    flipped = logits[0, :, ::-1, ::2]  # (C, h, w) with a negative stride
    single = np.zeros((23, 19), np.uint8)
    K.upsample_argmax(on_device(flipped), (23, 19), True, out=on_device(single), stream=0)
    np.testing.assert_array_equal(single, K.upsample_argmax(np.ascontiguousarray(flipped), (23, 19), True))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("src,dst", [((48, 64), (51, 102)), ((37, 53), (100, 61)), ((100, 100), (33, 47))])
def test_preprocess_kernel_matches_cpu_twin(emulated, src, dst, dtype):
    big = np.random.default_rng(src[0]).integers(0, 256, (src[0] + 3, src[1] + 5, 3), dtype=np.uint8)
    frame = big[2: 2 + src[0], 1: 1 + src[1]]  # a crop: row stride wider than the row
    for rgb in (True, False):
        out = np.zeros((1, 3, *dst), dtype)
        K.preprocess(on_device(frame), dst, rgb=rgb, dtype=dtype, out=on_device(out), stream=0)
        np.testing.assert_array_equal(out, K.preprocess(np.ascontiguousarray(frame), dst, rgb=rgb, dtype=dtype))


@pytest.mark.parametrize("ldtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_overlay_and_colorize_kernels_match_cpu_twin(emulated, ldtype):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = rng.integers(0, 22, (20, 30)).astype(ldtype)
    if np.issubdtype(ldtype, np.signedinteger):
        labels[0, :5] = -1  # no colour: the frame shows through
    palette = rng.integers(0, 256, (19, 3), dtype=np.uint8)
    for alpha in (0.0, 0.4, 1.0):
        out = np.zeros_like(frame)
        K.overlay(on_device(frame), on_device(labels), palette, alpha, out=on_device(out), stream=0)
        np.testing.assert_array_equal(out, K.overlay(frame, labels, palette, alpha))
    in_place = frame.copy()
    K.overlay(on_device(in_place), on_device(labels), palette, 0.4, out=on_device(in_place), stream=0)
    np.testing.assert_array_equal(in_place, K.overlay(frame, labels, palette, 0.4))
    colours = np.zeros((20, 30, 3), np.uint8)
    K.colorize(on_device(labels[:, ::-1]), palette, out=on_device(colours), stream=0)
    np.testing.assert_array_equal(colours, K.colorize(np.ascontiguousarray(labels[:, ::-1]), palette))


def test_every_kernel_is_reachable_from_python(emulated):
    for dtype in (np.float32, np.float16):
        for C in (3, 256):
            labels = np.zeros((5, 6), K.label_dtype(C))
            K.upsample_argmax(on_device(np.zeros((C, 2, 3), dtype)), (5, 6), out=on_device(labels), stream=0)
        K.preprocess(on_device(np.zeros((4, 4, 3), np.uint8)), (3, 5), dtype=dtype,
                     out=on_device(np.zeros((1, 3, 3, 5), dtype)), stream=0)
    for ldtype in (np.uint8, np.uint16, np.int32, np.int64):
        labels = on_device(np.zeros((2, 2), ldtype))
        K.overlay(on_device(np.zeros((4, 4, 3), np.uint8)), labels, [[1, 2, 3]], out=on_device(
            np.zeros((4, 4, 3), np.uint8)), stream=0)
        K.colorize(labels, [[1, 2, 3]], out=on_device(np.zeros((2, 2, 3), np.uint8)), stream=0)
    assert sorted(set(emulated.launched)) == sorted(cuda.KERNEL_NAMES)


def test_bad_arguments_fail_before_any_launch(emulated):
    with pytest.raises(RtsegError, match="cannot upsample"):
        K.upsample_argmax(on_device(np.zeros((1, 3, 0, 4), np.float32)), (8, 8), out=on_device(
            np.zeros((1, 8, 8), np.uint8)), stream=0)
    with pytest.raises(RtsegError, match="out must be uint8"):
        K.upsample_argmax(on_device(np.zeros((1, 3, 2, 4), np.float32)), (8, 8), out=on_device(
            np.zeros((1, 8, 8), np.int32)), stream=0)
    with pytest.raises(RtsegError, match="mean needs 3"):
        K.preprocess(on_device(np.zeros((4, 4, 3), np.uint8)), (3, 5), mean=(0.5, 0.5),
                     out=on_device(np.zeros((1, 3, 3, 5), np.float32)), stream=0)
    with pytest.raises(RtsegError, match="at most 256"):
        K.colorize(on_device(np.zeros((2, 2), np.uint8)), np.zeros((257, 3), np.uint8),
                   out=on_device(np.zeros((2, 2, 3), np.uint8)), stream=0)
    assert emulated.launched == []


# ---------------------------------------------------------------------------------------------------------------
# Streams and devices of the arrays


def test_the_stream_an_input_names_is_used_when_the_caller_names_none(emulated):
    logits = np.random.default_rng(4).standard_normal((3, 6, 7)).astype(np.float32)
    labels = np.zeros((9, 11), np.uint8)
    K.upsample_argmax(Exported(logits, 0x5000), (9, 11), out=on_device(labels))
    assert [e[3] for e in emulated.events] == [0x5000, 0x5000]  # both launches on the producer's stream
    np.testing.assert_array_equal(labels, K.upsample_argmax(logits, (9, 11)))
    emulated.events.clear()
    K.colorize(Exported(labels, 1), [[1, 2, 3]], out=on_device(np.zeros((9, 11, 3), np.uint8)))
    assert emulated.events == [("launch", "rtseg_colorize_u8", 0, 1)]  # 1: the legacy default stream


def test_a_callers_stream_wins_and_waits_for_the_producers(emulated):
    frame, labels = np.zeros((4, 5, 3), np.uint8), np.zeros((2, 2), np.uint8)
    out = np.zeros_like(frame)
    K.overlay(on_device(frame, stream=0x10), on_device(labels, stream=0x20), [[9, 9, 9]], out=on_device(out),
              stream=0x30)
    assert emulated.events == [("wait", 0x30, (0x10, 0x20), 0), ("launch", "rtseg_overlay_u8", 0, 0x30)]
    emulated.events.clear()
    K.overlay(on_device(frame, stream=0x10), on_device(labels, stream=0x20), [[9, 9, 9]],
              out=on_device(out, stream=0x10))
    assert emulated.events == [("wait", 0x10, (0x20,), 0), ("launch", "rtseg_overlay_u8", 0, 0x10)]


def test_arrays_on_two_gpus_are_refused_before_any_launch(emulated):
    logits, labels = np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(RtsegError, match=r"upsample_argmax: inputs and outputs must be on one GPU, got logits on "
                                         r"cuda:1, out on cuda:0"):
        K.upsample_argmax(on_device(logits, device=1), (4, 4), out=on_device(labels), stream=0)
    with pytest.raises(RtsegError, match="preprocess: .* frame on cuda:0, out on cuda:2"):
        K.preprocess(on_device(np.zeros((4, 4, 3), np.uint8)), (3, 5),
                     out=on_device(np.zeros((1, 3, 3, 5), np.float32), device=2), stream=0)
    assert emulated.launched == [] and not emulated.memory
    K.upsample_argmax(on_device(logits, device=1), (4, 4), out=on_device(labels, device=1), stream=0)
    assert emulated.events[0][2] == 1  # launched on the arrays' device
