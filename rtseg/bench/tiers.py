"""The three tiers, each a loop that warms up, then records one synchronised latency per frame.

(a) model only: the preprocessed input already where the runner reads it; on a GPU the time between two CUDA
    events on the runner's stream (what the GPU spent), on the CPU the synchronous call.
(b) model + transfers: a host BGR frame in, host labels out (``Segmenter.segment``: preprocess, infer,
    upsample/argmax), timed on the host around the whole call.
(c) end to end: ``rtseg run``'s pipeline (decode -> preprocess -> infer -> upsample/argmax -> overlay -> encode,
    reading and segmenting on their own threads): per-frame latency as the sum of that frame's stages, the
    queue-inclusive latency apart, and pipelined throughput.

Every tier calls the model from a worker thread, as ``rtseg run``'s pipeline does: PyTorch's and ONNX Runtime's
thread pools behave differently when driven from the main thread (on a busy 2-core machine PyTorch eager was 10x
slower there), and the tiers must differ only in what they include. Latency is always one frame at a time,
synchronised; throughput of (a) and (b) is frames over the wall time of
that sequential loop, throughput of (c) is the pipeline's own rate, where stages overlap.
"""

from __future__ import annotations

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
    queued: list[float] = field(default_factory=list)  # (c) only: decode -> encoded, queue waits included
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


def warm_up(seg, frames_in: list[np.ndarray], count: int, tick: Callable[[], None]) -> None:
    """Untimed ``segment`` calls on a freshly loaded configuration."""
    for i in range(count):
        seg.segment(frames_in[i % len(frames_in)])
        tick()


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
    """Tier (c): ``rtseg run``'s pipeline (its reader and segment threads, its overlay, its H.264 file sink) on the
    first ``warmup + frames`` frames of the source.

    The latency of a frame is the sum of its own stage times (decode, preprocess, infer, postprocess, overlay,
    encode), all measured on that frame: the work one frame costs, comparable with (a) and (b). The time a frame
    spends waiting in the pipeline's queues behind earlier ones is kept apart (``queued``: decode to encoded),
    and the throughput is the pipeline's, stages overlapping.
    """
    from ..video import iter_results
    from ..video.sinks import VideoFileSink

    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as tmp:
        sink = VideoFileSink(Path(tmp) / "out.mp4", None)
        count, timed_from = 0, time.perf_counter()
        try:
            for r in iter_results(seg, source, max_frames=warmup + frames, overlay=True):
                start = time.perf_counter()
                sink.write(r)
                encode = time.perf_counter() - start
                count += 1
                if count > warmup:
                    stages = {**r.timings, "encode": encode}
                    m.add(sum(stages.values()), stages)
                    m.queued.append(r.latency + encode)
                    m.wall = time.perf_counter() - timed_from
                    m.throughput = len(m.latencies) / m.wall
                elif count == warmup:
                    timed_from = time.perf_counter()
                tick()
        finally:
            sink.close()
    m.throughput_kind = "pipelined"
    if count <= warmup:
        m.note = (f"the source has only {count} frame{'s' if count != 1 else ''}, all spent on warm-up (--warmup"
                  f" {warmup}); pass a longer --source (a video) or a smaller --warmup")


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
