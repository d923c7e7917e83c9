"""What every benchmark script shares: where results go and how they are written, the timers, the machine stamp.

Import it first (``from _common import ...`` with benchmarks/ on sys.path, as each script sets up): it puts this
checkout's rtseg ahead of any installed one.

Timers: :class:`Span` measures a block's wall seconds, this process's CPU seconds (all its threads, so a library's
own threads count) and the share of the machine's CPUs that other processes took meanwhile (``others_cpu_share``:
0 when the machine was ours, 0.5 when others held half of it). Beside other jobs a wall-time figure means little;
the CPU seconds are what the load does not inflate, and the share says how comparable a run is with another.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's rtseg, whatever is installed

from rtseg import files  # noqa: E402
from rtseg.machine import describe_machine as describe_machine  # noqa: E402
from rtseg.machine import machine_stamp as _machine_stamp  # noqa: E402


# -- the machine --------------------------------------------------------------------------------------------------
def machine_stamp(**extra) -> dict:
    """rtseg.machine's stamp (host, date, CPU, cores, memory, load, GPUs, threads, versions) with ``extra`` keys."""
    return {**_machine_stamp(), **extra}


# -- results ------------------------------------------------------------------------------------------------------
def results_path(kind: str, host: str | None = None, folder: Path = RESULTS) -> Path:
    """benchmarks/results/<kind>-<host>.json (``folder`` instead of benchmarks/results where given)."""
    return Path(folder) / f"{kind}-{host or socket.gethostname()}.json"


def write_results(path: Path, results: dict) -> Path:
    """Write ``results`` as JSON to ``path``, atomically (a reader never sees half a file), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(path, json.dumps(results, indent=2, default=str) + "\n")
    return path


def save_results(kind: str, results: dict, host: str | None = None, out: Path | None = None) -> Path:
    """Write ``results`` to ``out`` or benchmarks/results/<kind>-<host>.json (atomically) and say where."""
    path = write_results(out or results_path(kind, host), results)
    print(f"\nwrote {path}")
    return path


# -- timers -------------------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU seconds this process has used, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent (Linux /proc/stat), None where that cannot be read."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Span:
    """``with Span() as s: ...`` -> ``s.wall``, ``s.cpu`` (this process) and ``s.others_cpu_share`` (None where
    /proc/stat cannot be read) of the block."""

    wall: float
    cpu: float
    others_cpu_share: float | None

    def __enter__(self) -> Span:
        self._busy, self._cpu, self._t0 = busy_cpu_seconds(), cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        t1, cpu1, busy1 = time.perf_counter(), cpu_seconds(), busy_cpu_seconds()
        self.wall, self.cpu = t1 - self._t0, cpu1 - self._cpu
        self.others_cpu_share = None
        if self._busy is not None and busy1 is not None and self.wall > 0:
            cores = os.cpu_count() or 1
            self.others_cpu_share = max(0.0, (busy1 - self._busy) - self.cpu) / (cores * self.wall)


def timeit_in_turn(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 1) -> dict:
    """Each function called once per round, in turn: wall and process CPU time per call, and the others' CPU share.

    ``others_cpu_share`` is the median over the calls of the CPU time other processes took during a call over the
    machine's capacity for that long.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: {"wall": [], "cpu": [], "others": []} for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            with Span() as span:
                fn()
            s = samples[name]
            s["wall"].append(span.wall)
            s["cpu"].append(span.cpu)
            if span.others_cpu_share is not None:
                s["others"].append(span.others_cpu_share)
    return {name: {"median_ms": 1e3 * statistics.median(s["wall"]), "min_ms": 1e3 * min(s["wall"]),
                   "cpu_ms_median": 1e3 * statistics.median(s["cpu"]),
                   "others_cpu_share": statistics.median(s["others"]) if s["others"] else None, "repeat": repeat}
            for name, s in samples.items()}


def timeit(fn: Callable[[], object], repeat: int, warmup: int = 1) -> dict:
    """Wall time of a host (CPU) call (median and min ms), with its CPU time and the others' CPU share."""
    return timeit_in_turn({"fn": fn}, repeat, warmup)["fn"]


def median_cpu_seconds(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Median process CPU seconds of ``fn`` after ``warmup`` calls (what other jobs on the machine change little)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = cpu_seconds()
        fn()
        times.append(cpu_seconds() - start)
    return statistics.median(times)
