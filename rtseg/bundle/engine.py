"""Does a bundle's TensorRT engine fit this machine? Pure checks over the manifest's build stamp.

TensorRT engines run only under the exact TensorRT version that built them and on the GPU architecture they were
built for. The caller (:mod:`rtseg.runtime.tensorrt`) supplies this machine's TensorRT version and GPU; nothing
here imports TensorRT or CUDA.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import RtsegError
from .format import ENGINE_FILE
from .store import rebuild_command


def stamp_problems(build: Mapping, trt_version: str, here) -> list[str]:
    """How a build stamp (TensorRT version, compute capability) differs from this machine; empty if it fits.
    ``here`` has ``name`` and ``compute_capability`` (a :class:`rtseg.cuda.info.GpuInfo`)."""
    problems = []
    if build.get("tensorrt") != trt_version:
        problems.append(f"TensorRT {build.get('tensorrt')} (this machine has {trt_version})")
    if build.get("compute_capability") != here.compute_capability:
        problems.append(f"compute capability {build.get('compute_capability')} ({build.get('gpu')}; this machine"
                        f" has {here.compute_capability}, {here.name})")
    return problems


def engine_file(manifest: Mapping, root: Path) -> Path:
    """The engine's path; one line with the rebuild command when the bundle has none."""
    engine = (manifest.get("artifacts") or {}).get("engine")
    if not engine:
        raise RtsegError(f"the bundle {root} has no TensorRT engine; build one on this machine with:"
                         f" {rebuild_command(manifest, root)}")
    return root / engine.get("file", ENGINE_FILE)


def check_engine_fits(manifest: Mapping, root: Path, trt_version: str, here) -> Path:
    """The engine's path when its stamp matches ``trt_version`` and the GPU ``here``; else one line saying what
    differs and the rebuild command."""
    path = engine_file(manifest, root)
    problems = stamp_problems(manifest.get("build") or {}, trt_version, here)
    rebuild = rebuild_command(manifest, root)
    if problems:
        raise RtsegError(f"the engine in {root} was built for {' and '.join(problems)}; rebuild it with: {rebuild}")
    if not path.is_file():
        raise RtsegError(f"the engine file {path} is missing; rebuild it with: {rebuild}")
    return path
