"""Run statistics in constant memory: per-stage and end-to-end latency percentiles, throughput, drops, staleness.

Latencies go into log-spaced histograms (2% wide bins from 10 µs to 1,000 s), so a run of hours keeps the same
few kilobytes and its percentiles stay within 2% of the exact ones.
"""

from __future__ import annotations

import collections
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

_LOW, _RATIO = 1e-5, 1.02
_BINS = int(math.log(1e3 / _LOW) / math.log(_RATIO)) + 2


class LatencyHistogram:
    """Seconds into log-spaced bins; ``percentile(q)`` answers within one bin (2%)."""

    def __init__(self):
        self.counts = np.zeros(_BINS, np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        seconds = max(float(seconds), 0.0)
        b = 0 if seconds <= _LOW else min(_BINS - 1, int(math.log(seconds / _LOW) / math.log(_RATIO)) + 1)
        self.counts[b] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float:
        if not self.count:
            return float("nan")
        rank = math.ceil(q / 100 * self.count)
        b = int(np.searchsorted(np.cumsum(self.counts), max(rank, 1)))
        # the bin's geometric middle, never above the largest value seen
        upper = _LOW * _RATIO ** b
        return min(upper / math.sqrt(_RATIO) if b else _LOW, self.max)

    def summary(self) -> dict:
        if not self.count:
            return {"n": 0}
        return {"n": self.count, "mean": self.total / self.count, "p50": self.percentile(50),
                "p90": self.percentile(90), "p99": self.percentile(99), "max": self.max}


@dataclass
class RunSummary:
    """What a run did: frames, drops, throughput and latency percentiles (seconds)."""

    source: str = ""
    live: bool = False
    frames: int = 0                       # frames segmented (and handed to every sink)
    drops: int = 0                        # live source: decoded frames replaced before the model took them
    sink_drops: int = 0                   # live source: results a slow sink had no room for
    skipped: int = 0                      # undecodable files or packets skipped with a warning
    reconnects: int = 0                   # reconnect attempts, over all outages
    outages: int = 0                      # times a live source went offline (each may take several attempts)
    offline_s: float = 0.0                # seconds offline, summed over the outages
    wall_s: float = 0.0
    fps: float = 0.0                      # frames / wall_s
    source_fps: float | None = None
    stages: dict = field(default_factory=dict)      # stage -> {n, mean, p50, p90, p99, max}
    latency: dict = field(default_factory=dict)     # capture -> results handed to the sinks
    staleness: dict = field(default_factory=dict)   # capture -> the model takes the frame
    work: dict = field(default_factory=dict)        # per frame: the sum of its stages (decode ... overlay)
    queued: dict = field(default_factory=dict)      # per frame: end-to-end latency less its stages (queue wait)
    end_reason: str = ""
    signal: int | None = None             # the signal that stopped the run (SIGINT 2, SIGTERM 15)
    outputs: dict = field(default_factory=dict)     # sink -> what it wrote
    segmenting: str = ""                  # how frames were segmented: one at a time, or side by side

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The human summary printed at the end of a run."""
        def ms(d: dict, key: str) -> str:
            return f"{d[key] * 1e3:.1f}" if d.get("n") else "-"

        out = [f"{self.frames} frames in {self.wall_s:.1f} s = {self.fps:.1f} fps"
               + (f" (source {self.source_fps:.1f} fps)" if self.source_fps else "")
               + f"; drops {self.drops}" + (f", sink drops {self.sink_drops}" if self.sink_drops else "")
               + (f", skipped {self.skipped}" if self.skipped else "")
               + (f", outages {self.outages} ({self.offline_s:.1f} s offline, {self.reconnects} reconnect"
                  f" attempt{'s' if self.reconnects != 1 else ''}; the recording cuts them)" if self.outages else "")
               + f"; {self.end_reason}"]
        if self.live:
            rows = [("end-to-end", self.latency), ("staleness", self.staleness), *self.stages.items()]
        else:  # a file waits in queues by design (reading runs ahead): the frame's own work and its wait apart
            rows = [("per frame", self.work), ("queue wait", self.queued), *self.stages.items()]
        out.append("  ms            p50     p90     p99")
        for name, d in rows:
            if d.get("n"):
                out.append(f"  {name:<12}{ms(d, 'p50'):>6}  {ms(d, 'p90'):>6}  {ms(d, 'p99'):>6}")
        return out


class RunStats:
    """Collects timings from every stage thread (thread-safe) and writes optional JSON lines per frame."""

    def __init__(self, jsonl_path=None):
        self._lock = threading.Lock()
        self.stages: dict[str, LatencyHistogram] = {}
        self.latency = LatencyHistogram()
        self.staleness = LatencyHistogram()
        self.work = LatencyHistogram()
        self.queued = LatencyHistogram()
        self.frames = 0
        self.started = time.monotonic()
        self.recent: collections.deque = collections.deque()  # result times within the last WINDOW seconds
        self.outages = 0
        self.offline_s = 0.0
        self._offline_since: float | None = None
        self._jsonl = None
        self._jsonl_path = jsonl_path
        if jsonl_path is not None:
            from .outputs import open_for_writing

            self._jsonl = open_for_writing(jsonl_path, "--stats")

    def add_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stages.setdefault(stage, LatencyHistogram()).add(seconds)

    def add_result(self, result, drops: int) -> None:
        with self._lock:
            self.frames += 1
            self.latency.add(result.latency)
            self.staleness.add(result.staleness)
            work = sum(result.timings.values())
            self.work.add(work)
            self.queued.add(max(result.latency - work, 0.0))
            for stage, seconds in result.timings.items():
                self.stages.setdefault(stage, LatencyHistogram()).add(seconds)
            now = time.monotonic()
            self.recent.append(now)
            self._trim(now)
        if self._jsonl is not None:
            record = {"index": result.index, "t": round(result.captured - self.started, 6),
                      "latency": round(result.latency, 6), "staleness": round(result.staleness, 6),
                      "timings": {k: round(v, 6) for k, v in result.timings.items()}, "drops": drops}
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()

    WINDOW = 3.0

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0] < now - self.WINDOW:
            self.recent.popleft()

    def fps(self) -> float:
        """The run's mean: frames over the time since it started."""
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def current_fps(self) -> float:
        """Frames per second over the last ``WINDOW`` seconds (0 while no frame comes)."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            count = len(self.recent)
        span = min(self.WINDOW, now - self.started)
        return count / span if span > 0 else 0.0

    def on_state(self, state: str) -> None:
        """A live source's state change: entering ``reconnecting`` starts an outage, ``running`` ends it."""
        now = time.monotonic()
        with self._lock:
            if state == "reconnecting" and self._offline_since is None:
                self.outages += 1
                self._offline_since = now
            elif state != "reconnecting" and self._offline_since is not None:
                self.offline_s += now - self._offline_since
                self._offline_since = None

    def fill(self, summary: RunSummary) -> RunSummary:
        with self._lock:
            summary.frames = self.frames
            summary.wall_s = time.monotonic() - self.started
            summary.fps = self.frames / summary.wall_s if summary.wall_s > 0 else 0.0
            summary.stages = {k: v.summary() for k, v in self.stages.items()}
            summary.latency = self.latency.summary()
            summary.staleness = self.staleness.summary()
            summary.work, summary.queued = self.work.summary(), self.queued.summary()
            summary.outages = self.outages
            summary.offline_s = self.offline_s + (time.monotonic() - self._offline_since
                                                  if self._offline_since is not None else 0.0)
        return summary

    def close(self, summary: RunSummary | None = None) -> None:
        if self._jsonl is not None:
            if summary is not None:
                self._jsonl.write(json.dumps({"summary": summary.to_dict()}) + "\n")
            self._jsonl.close()
            self._jsonl = None

    def discard(self) -> None:
        """Close and remove the JSON lines file of a run that never started (nothing half-written stays)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
            os.unlink(self._jsonl_path)


def live_stats(run_stats: RunStats, src) -> dict:
    """What ``/stats.json`` and the status line show: current fps (sliding window) beside the run's mean."""
    lat = run_stats.latency
    return {"frames": run_stats.frames, "fps": run_stats.current_fps(), "fps_mean": run_stats.fps(),
            "fps_window_s": run_stats.WINDOW, "drops": src.drops, "outages": run_stats.outages,
            "reconnect_attempts": getattr(src, "reconnects", 0),
            "latency_p50": lat.percentile(50) if lat.count else None,
            "latency_p99": lat.percentile(99) if lat.count else None}
