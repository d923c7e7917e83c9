"""cpp_ext/kernels.cu for the GPU at hand: where its sources live, the NVRTC options the kernels' bit-exactness
rests on, the architectures the compile test covers, and :func:`compile_cubin`, which hands them to the CUDA
layer's compile-and-cache service (:func:`rtseg.cuda.nvrtc.compile_program`). The entry points are listed beside
the wrappers that launch them (:data:`rtseg.kernels.cuda.KERNEL_NAMES`).

Everything here imports cuda-python lazily (through :mod:`rtseg.cuda.nvrtc`).
"""

from __future__ import annotations

from pathlib import Path

from ..cuda import nvrtc
from ..cuda.nvrtc import cache_key as _cache_key  # noqa: F401 - the key of compile_cubin's cache files (tested)
from ..cuda.nvrtc import compile_target as compile_target  # what compile_cubin takes for a device's arch
from ..cuda.nvrtc import nvrtc_archs as nvrtc_archs
from ..errors import RtsegError

#: the architectures the compile test covers (Turing to Hopper)
SUPPORTED_ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
#: Only options every NVRTC since CUDA 11 knows (its default dialect is C++17 and the sources need no more).
#: --fmad=false: only the fused multiply-adds written out in rtseg_pixel.h, so the CPU twin matches bit for bit;
#: --ftz/--prec-div spell out NVRTC's defaults, which the bit-exactness rests on.
NVRTC_OPTIONS: tuple[str, ...] = ("--fmad=false", "--ftz=false", "--prec-div=true")
MAIN_SOURCE = "kernels.cu"
_SOURCE_FILES = (MAIN_SOURCE, "rtseg_pixel.h")


def source_dir() -> Path:
    """Where kernels.cu lives: the checkout's cpp_ext/ when running from one (so an editable install never reads a
    stale copy), else the copy build_py ships inside the package (rtseg/kernels/cuda_src/)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "cpp_ext", here / "cuda_src"):
        if (candidate / MAIN_SOURCE).is_file():
            return candidate
    raise RtsegError("the CUDA sources (kernels.cu) are missing from this installation; reinstall rtseg")


def _sources() -> dict[str, bytes]:
    folder = source_dir()
    return {name: (folder / name).read_bytes() for name in _SOURCE_FILES}


def compile_cubin(arch: str, *, use_cache: bool = True) -> bytes:
    """Compile kernels.cu for ``arch`` through the disk cache: a cubin for ``"sm_XX"``, NUL-terminated PTX for
    ``"compute_XX"`` (both are what cuModuleLoadData takes); :func:`compile_target` says which a device needs."""
    return nvrtc.compile_program(_sources(), MAIN_SOURCE, arch, NVRTC_OPTIONS, use_cache=use_cache)
