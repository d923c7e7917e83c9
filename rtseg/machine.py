"""The machine rtseg runs on: its CPU, GPUs, memory and the versions of the packages that shape a result.

A figure without its machine means nothing, so every benchmark and ``rtseg bench`` writes :func:`machine_stamp`
beside its numbers; an export keys its cached steps on :func:`package_versions`; the export's memory checks ask
:func:`available_memory`. Only the standard library is imported here; a library's thread count is read only where
the process has already imported that library.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

# Packages whose installed distribution goes by several names: each name here is tried in turn, then whichever
# installed distribution provides the module (any other ONNX Runtime build: onnxruntime-directml, -qnn, ...).
_ALIASES = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml",
                    "onnxruntime-training", "onnxruntime-qnn"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless"),
}
_MODULES = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "opencv": "cv2"}
# What a machine stamp records the versions of (besides rtseg and Python).
TOOLS = ("numpy", "torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "nvidia-modelopt", "tensorrt", "opencv",
         "av", "ray")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores_usable() -> int:
    """Cores this process may run on (its CPU affinity mask; every core where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpus() -> list[dict]:
    """GPU names, driver versions and memory as nvidia-smi reports them; empty where there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1] if len(r) > 1 else None, "memory": r[2] if len(r) > 2 else None}
            for r in rows]


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution in ``names`` (None where it is not installed).

    ``"onnxruntime"`` stands for ONNX Runtime whichever distribution installed it (onnxruntime, onnxruntime-gpu,
    onnxruntime-openvino, ...); ``"tensorrt"`` and ``"opencv"`` likewise for their several wheels.
    """
    found = {}
    for name in names:
        version = next((v for v in map(_version, _ALIASES.get(name, (name,))) if v), None)
        if version is None and name in _MODULES:
            version = next((v for v in map(_version, _module_distributions().get(_MODULES[name], ())) if v), None)
        found[name] = version
    return found


def tool_versions(names: Iterable[str] = TOOLS) -> dict[str, str | None]:
    """rtseg's and Python's versions, and :func:`package_versions` of ``names``."""
    from . import __version__

    return {"rtseg": __version__, "python": platform.python_version(), **package_versions(names)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def total_memory() -> int | None:
    """Physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(limits: bool = True) -> tuple[int, str]:
    """Bytes this process can still take, and what limits it: free memory, a cgroup, or an rlimit.

    Free memory is ``MemAvailable`` (Linux), else the physical memory. ``limits=False`` leaves out the cgroup's and
    the process's limits: what the machine has, whatever this process may take of it. Where nothing can be read
    the answer is ``(1 << 62, "unknown")``, which no estimate exceeds.
    """
    candidates = []
    free = _read_kib("/proc/meminfo", "MemAvailable:")
    if free is not None:
        candidates.append((free, "free memory"))
    elif (physical := total_memory()) is not None:
        candidates.append((physical, "physical memory"))
    if not limits:
        return min(candidates, default=(1 << 62, "unknown"))
    cg_max, cg_now = _read_text("/sys/fs/cgroup/memory.max"), _read_text("/sys/fs/cgroup/memory.current")
    if cg_max and cg_now and cg_max != "max":
        candidates.append((int(cg_max) - int(cg_now), "the cgroup's memory.max"))
    for name, field in (("RLIMIT_AS", "VmSize:"), ("RLIMIT_DATA", "VmData:")):
        soft = resource.getrlimit(getattr(resource, name))[0]
        used = _read_kib("/proc/self/status", field)
        if soft != resource.RLIM_INFINITY and used is not None:
            candidates.append((soft - used, f"the process's {name}"))
    if not candidates:
        return 1 << 62, "unknown"
    return min(candidates)


def _read_kib(path: str, field: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def library_threads() -> dict[str, int | str | None]:
    """``$RTSEG_NUM_THREADS`` and the thread counts of PyTorch and OpenCV, where this process has imported them."""
    threads: dict[str, int | str | None] = {"RTSEG_NUM_THREADS": os.environ.get("RTSEG_NUM_THREADS")}
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    if "cv2" in sys.modules:
        threads["opencv"] = sys.modules["cv2"].getNumThreads()
    return threads


def machine_stamp() -> dict:
    """Where and with what a result was measured: host, date, CPU, cores, memory, load, GPUs, threads, versions."""
    memory = total_memory()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "host": socket.gethostname(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": cores_usable(),
        "memory_gb": None if memory is None else round(memory / 1e9, 1),
        "load_average": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpus(),
        "threads": library_threads(),
        "versions": tool_versions(),
    }


def describe_machine(stamp: dict) -> str:
    """One line: CPU, cores, GPU, the main versions."""
    v = stamp["versions"]
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in stamp["gpus"]) or "no GPU"
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "tensorrt", "opencv") if v.get(k))
    return f"{stamp['cpu']}, {stamp['cores_usable']} cores usable, {gpu}; rtseg {v['rtseg']}, {libs}"
