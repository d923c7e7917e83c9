"""NVRTC: CUDA C++ compiled at run time for the GPU it runs on, with an on-disk cache of the result.

Why run-time compilation: the wheel stays pure Python plus a small CPU extension, and the cubin is built for the
exact GPU it runs on. :func:`compile_program` takes the sources as text (a main file and the headers it includes),
an architecture and NVRTC options, and caches the cubin (or PTX) on disk (key: sha256 of the sources, architecture,
options and NVRTC version; atomic write), so a compile (~1 s) happens once per machine. No GPU is needed to
compile. What to compile, with which options, is the caller's business: this module knows no particular source.

NVRTC comes from the ``nvidia-cuda-nvrtc-cu12`` wheel (or a CUDA toolkit) and is loaded by cuda-python, which
looks for the NVRTC of its own CUDA major version: the ``gpu`` extra pins the two to one major (see
:func:`nvrtc_wheel`). Everything here imports cuda-python lazily.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..errors import RtsegError, missing_dependency


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


def nvrtc_wheel(cuda_major: int) -> str:
    """The pip package that ships the NVRTC of CUDA ``cuda_major``: ``nvidia-cuda-nvrtc-cu12`` for CUDA 12,
    plain ``nvidia-cuda-nvrtc`` from CUDA 13 on (``nvidia-cuda-nvrtc-cu13`` on PyPI is an empty placeholder)."""
    return f"nvidia-cuda-nvrtc-cu{cuda_major}" if cuda_major <= 12 else "nvidia-cuda-nvrtc"


@functools.cache
def bindings_major() -> int:
    """The CUDA major version of the installed cuda-python (cuda.bindings): the NVRTC major it loads."""
    _nvrtc()
    from cuda import bindings

    return int(str(bindings.__version__).split(".")[0])


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor); the first NVRTC call, so a missing libnvrtc surfaces here as one clear error."""
    nvrtc = _nvrtc()
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # noqa: BLE001 - the loader raises RuntimeError or its own error types
        why = " ".join(str(exc).split())
        cuda_major = bindings_major()
        raise RtsegError(
            f"NVRTC could not be loaded ({why}); cuda-python {cuda_major}.x needs the NVRTC of CUDA {cuda_major}: "
            f"pip install {nvrtc_wheel(cuda_major)} (or pip install 'rtseg[gpu]', which pins a matching pair), "
            f"or put a CUDA {cuda_major} toolkit's lib64 on LD_LIBRARY_PATH"
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


def cache_key(sources: dict[str, bytes], arch: str, options: Sequence[str]) -> str:
    """The cache key of a compile: sha256 of the sources (by name), architecture, options and NVRTC version."""
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


def compile_program(sources: dict[str, bytes], main: str, arch: str, options: Sequence[str] = (), *,
                    use_cache: bool = True) -> bytes:
    """Compile ``sources[main]`` (the other entries are headers it includes, by name) for ``arch`` through the disk
    cache: a cubin for ``"sm_XX"``, NUL-terminated PTX for ``"compute_XX"`` (both are what cuModuleLoadData takes).

    The cache file is ``<main's stem>-<arch>-<key>.cubin`` (or ``.ptx``) under :func:`cache_dir`.
    """
    options = tuple(options)
    key = cache_key(sources, arch, options)
    suffix = "ptx" if arch.startswith("compute_") else "cubin"
    cached = cache_dir() / f"{Path(main).stem}-{arch}-{key[:32]}.{suffix}"
    if use_cache and cached.is_file():
        return cached.read_bytes()
    image = _nvrtc_compile(sources, main, arch, options)
    if use_cache:
        try:
            _atomic_write(cached, image)
        except OSError:  # a read-only home still runs, it just recompiles next time
            pass
    return image


def _nvrtc_compile(sources: dict[str, bytes], main: str, arch: str, options: tuple[str, ...]) -> bytes:
    nvrtc = _nvrtc()
    nvrtc_version()
    ptx = arch.startswith("compute_")
    headers = [name for name in sources if name != main]
    err, program = nvrtc.nvrtcCreateProgram(
        sources[main], main.encode(), len(headers), [sources[h] for h in headers], [h.encode() for h in headers]
    )
    _check_nvrtc(err, "program creation")
    try:
        flags = [*(o.encode() for o in options), f"--gpu-architecture={arch}".encode()]
        (err,) = nvrtc.nvrtcCompileProgram(program, len(flags), flags)
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
