"""The machine and versions a result was measured on: a figure without its machine means nothing."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from importlib import metadata

from .. import __version__

# distribution names that provide each library, first found wins
_DISTRIBUTIONS = {
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "av": ("av",),
    "numpy": ("numpy",),
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """GPU names and driver versions as nvidia-smi reports them; empty where there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2] if len(r) > 2 else None} for r in rows]


def versions() -> dict:
    found = {"rtseg": __version__, "python": platform.python_version()}
    for lib, dists in _DISTRIBUTIONS.items():
        found[lib] = next((_version(d) for d in dists if _version(d)), None)
    return found


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_stamp() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "platform": platform.platform(),
        "gpus": gpus(),
        "versions": versions(),
    }


def describe_machine(stamp: dict) -> str:
    """One line: CPU, cores, GPU, the main versions."""
    v = stamp["versions"]
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in stamp["gpus"]) or "no GPU"
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "tensorrt", "opencv") if v.get(k))
    return f"{stamp['cpu']}, {stamp['cores_usable']} cores usable, {gpu}; rtseg {v['rtseg']}, {libs}"
