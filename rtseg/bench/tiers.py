"""The three tiers, each a loop that warms up, then records one synchronised latency per frame.

(a) model only: the preprocessed input already where the runner reads it; on a GPU the time between two CUDA
    events on the runner's stream (what the GPU spent), on the CPU the synchronous call.
(b) model + transfers: a host BGR frame in, host labels out (``Segmenter.segment``: preprocess, infer,
    upsample/argmax), timed on the host around the whole call.
(c) end to end: ``rtseg run``'s pipeline (decode -> preprocess -> infer -> upsample/argmax -> overlay -> encode,
    stages on their own threads): per-frame latency from decode to the result, and pipelined throughput.

Every tier calls the model from a worker thread, as ``rtseg run``'s pipeline does: PyTorch's and ONNX Runtime's
thread pools behave differently when driven from the main thread (on a busy 2-core machine PyTorch eager was 10x
slower there), and the tiers must differ only in what they include. Latency is always one frame at a time,
synchronised; throughput of (a) and (b) is frames over the wall time of
that sequential loop, throughput of (c) is the pipeline's own rate, where stages overlap.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIERS = {"a": "model only", "b": "model + transfers", "c": "end to end", "naive": "naive baseline"}


@dataclass
class Measurement:
    """One row of the table: a tier of one bundle x backend x size, filled in as it is measured."""

    bundle: str
    backend: str
    tier: str  # a, b, c or naive
    input_size: tuple[int, int]
    frame_size: tuple[int, int]
    describe: dict = field(default_factory=dict)  # the runtime's describe(): provider, device, graph
    latencies: list[float] = field(default_factory=list)  # seconds, one per timed frame, warm-up excluded
    stages: dict[str, list[float]] = field(default_factory=dict)  # stage -> seconds per frame
    wall: float = 0.0  # seconds the timed frames took together (sequential tiers)
    throughput: float | None = None  # frames per second
    throughput_kind: str = "sequential"
    note: str = ""

    def add(self, seconds: float, stages: dict[str, float] | None = None) -> None:
        self.latencies.append(seconds)
        for name, value in (stages or {}).items():
            self.stages.setdefault(name, []).append(value)

    def finish_sequential(self) -> None:
        if self.latencies and self.wall > 0:
            self.throughput = len(self.latencies) / self.wall


class _Stop(Exception):
    """Raised inside a worker's loop (through its tick) once the main thread was interrupted."""


def in_worker(tier: Callable, *args) -> None:
    """Run ``tier(*args)`` on a worker thread; its last argument is the per-frame tick. Ctrl-C in the main thread
    stops the worker after its current frame (what it measured stays in its Measurement) and is re-raised."""
    *rest, tick = args
    stop = threading.Event()
    errors: list[BaseException] = []

    def checked_tick() -> None:
        if stop.is_set():
            raise _Stop
        tick()

    def work() -> None:
        try:
            tier(*rest, checked_tick)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    worker = threading.Thread(target=work, name="rtseg-bench", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        stop.set()
        worker.join()
        raise
    if errors:
        raise errors[0]


def model_only(seg, frame: np.ndarray, m: Measurement, frames: int, warmup: int, tick: Callable[[], None]) -> None:
    """Tier (a): ``runner.infer`` on an input prepared once, already on the runner's device."""
    from ..kernels import preprocess

    runner = seg.runner
    size = seg.input_size_for(frame.shape[:2])
    x = preprocess(frame, size, seg.mean, seg.std, rgb=seg.rgb, pixel_range=seg.pixel_range,
                   dtype=runner.input_dtype)  # (1, 3, h, w)
    if runner.on_gpu:
        _model_only_gpu(runner, x, m, frames, warmup, tick)
        return
    for _ in range(warmup):
        runner.infer(x)
        tick()
    start_all = time.perf_counter()
    for _ in range(frames):
        start = time.perf_counter()
        runner.infer(x)
        m.add(time.perf_counter() - start, {"infer": time.perf_counter() - start})
        m.wall = time.perf_counter() - start_all
        tick()
    m.finish_sequential()


def _model_only_gpu(runner, x: np.ndarray, m: Measurement, frames: int, warmup: int, tick) -> None:
    """CUDA events around each ``infer`` on the runner's stream: the GPU's time, not the enqueue's."""
    import torch

    device = torch.device(runner.device)
    x_dev = torch.from_numpy(x).to(device)  # (1, 3, h, w) on the GPU before timing starts
    stream = torch.cuda.ExternalStream(runner.stream, device=device) if runner.stream else \
        torch.cuda.current_stream(device)
    torch.cuda.synchronize(device)
    for _ in range(warmup):
        runner.infer(x_dev)
        tick()
    stream.synchronize()
    start_all = time.perf_counter()
    for _ in range(frames):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record(stream)
        runner.infer(x_dev)
        end.record(stream)
        end.synchronize()
        seconds = begin.elapsed_time(end) / 1e3
        m.add(seconds, {"infer": seconds})
        m.wall = time.perf_counter() - start_all
        tick()
    m.finish_sequential()


def with_transfers(seg, frames_in: list[np.ndarray], m: Measurement, frames: int, warmup: int,
                   tick: Callable[[], None]) -> None:
    """Tier (b): ``seg.segment`` on host frames (cycled), labels back on the host."""
    for i in range(warmup):
        seg.segment(frames_in[i % len(frames_in)])
        tick()
    start_all = time.perf_counter()
    for i in range(frames):
        frame = frames_in[(warmup + i) % len(frames_in)]
        start = time.perf_counter()
        r = seg.segment(frame)
        m.add(time.perf_counter() - start, r.timings)
        m.wall = time.perf_counter() - start_all
        tick()
    m.finish_sequential()


def end_to_end(seg, source: str, m: Measurement, frames: int, warmup: int, tick: Callable[[], None]) -> None:
    """Tier (c): ``rtseg run SOURCE --save out.mp4`` on the first ``warmup + frames`` frames of the source.

    The latency of a frame is ``rtseg run``'s: from the moment it was decoded to the moment its overlay is handed to
    the encoder. The encoder runs on its own thread; its time per frame is reported as the ``encode`` stage and
    it is inside the throughput, which is measured over the timed frames from the pipeline's per-frame record.
    """
    from ..video import run_pipeline

    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as tmp:
        stats = Path(tmp) / "stats.jsonl"
        summary = run_pipeline(seg, source, save=Path(tmp) / "out.mp4", stats=stats, max_frames=warmup + frames,
                               handle_signals=False)
        records = [json.loads(line) for line in stats.read_text().splitlines()]
    records = [r for r in records if "index" in r]
    for _ in records:
        tick()
    timed = records[warmup:]
    if len(records) <= warmup:
        m.note = f"the source has only {len(records)} frames, all spent on warm-up"
        return
    for r in timed:
        m.add(r["latency"], r["timings"])
    encode = summary.stages.get("save", {})
    if encode.get("n"):
        m.stages["encode"] = [encode["mean"]] * len(timed)  # the encoder thread's mean per frame
    done = [r["t"] + r["latency"] for r in timed]
    if len(done) > 1 and done[-1] > done[0]:
        m.throughput = (len(done) - 1) / (done[-1] - done[0])
    else:
        m.throughput = summary.fps
    m.throughput_kind = "pipelined"
    m.wall = summary.wall_s


def naive(baseline, frames_in: list[np.ndarray], m: Measurement, frames: int, warmup: int,
          tick: Callable[[], None]) -> None:
    """The naive row: what a user writes by hand, per frame, timed like tier (b) plus the blend."""
    for i in range(warmup):
        baseline(frames_in[i % len(frames_in)])
        tick()
    start_all = time.perf_counter()
    for i in range(frames):
        frame = frames_in[(warmup + i) % len(frames_in)]
        start = time.perf_counter()
        _, stages = baseline(frame)
        m.add(time.perf_counter() - start, stages)
        m.wall = time.perf_counter() - start_all
        tick()
    m.finish_sequential()
