"""The streaming pipeline: read/decode -> segment -> sinks, each stage on its own thread, bounded queues between.

Lossless sources (files, folders) block at every queue, so every frame reaches the model and every sink, in
order. Live sources keep only the newest decoded frame (the source's own grabber thread), the segment stage takes
whatever is newest when it is free, and the sinks drop their oldest queued result rather than hold the model back.

``iter_results`` yields results for people who write their own loop (nothing is kept: flat memory);
``run_pipeline`` drives the sinks, the statistics, the progress display and the stop signals.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import RtsegError
from ..interrupts import GracefulStop
from .progress import Progress
from .sources import FrameSource, open_source
from .stats import RunStats, RunSummary, live_stats

_END = object()


@dataclass
class Result:
    """One segmented frame."""

    index: int                  # the frame's position in the source
    frame: np.ndarray           # (H, W, 3) uint8 BGR, as decoded
    labels: np.ndarray          # (H, W) class ids at the frame's size
    timings: dict = field(default_factory=dict)   # stage -> seconds: decode, preprocess, infer, postprocess, overlay
    captured: float = 0.0       # time.monotonic() when the frame was decoded
    staleness: float = 0.0      # capture -> the model took the frame (s)
    latency: float = 0.0        # capture -> the result was handed out (s)
    overlay: np.ndarray | None = None
    name: str = ""              # the image file, for folder sources


class SourceFailed(RtsegError):
    """The source failed mid-run; sinks were finalised. ``summary`` says what was done before."""

    summary: RunSummary | None = None


class _Stages:
    """The reader and segment threads between a source and the consumer.

    A lossless source on the CPU runs in throughput mode where the runtime can offer it: two segment threads, each
    with its own one-thread copy of the model (:meth:`Segmenter.replicas`), take frames in turn and hand out the
    results in the source's order. Splitting every frame over two threads (intra-op) costs more CPU time per frame
    than running two frames side by side, and on a small machine the cores are what limits a file's throughput. A
    live source keeps one segment thread with every thread on the newest frame: latency first.
    """

    def __init__(self, seg, source: FrameSource, max_frames: int | None, overlay: float | None = None):
        self.seg, self.source, self.max_frames = seg, source, max_frames
        # On a GPU the overlay is made on the model's CUDA stream with the labels (one download, no extra pass);
        # on the CPU the consumer thread makes it while the model runs the next frame.
        self.gpu_overlay = overlay if seg.on_gpu else None
        self.stop_reading = threading.Event()   # graceful: what was read is still segmented and handed out
        self.abort = threading.Event()          # the consumer is gone: stop now
        self.lossless = not source.live
        self.frames: queue.Queue = queue.Queue(maxsize=4)
        self.results: queue.Queue = queue.Queue(maxsize=4 if self.lossless else 1)
        self.source_error: BaseException | None = None
        self.model_error: BaseException | None = None
        self.end_reason = ""
        self.workers = self._segment_workers() if self.lossless else [seg]
        #: what computes the overlay in the consumer: a worker's copy (its thread count) in throughput mode
        self.overlay_seg = self.workers[0]
        self._order = threading.Lock()         # results leave in the order frames were read
        self._finished: dict[int, Result] = {}  # segmented, waiting for an earlier frame still being segmented
        self._next_out = 0
        self._running = len(self.workers)
        self.threads = [threading.Thread(target=self._segment, args=(worker,), name=f"rtseg-segment-{i}",
                                         daemon=True) for i, worker in enumerate(self.workers)]
        if self.lossless:
            self.threads.append(threading.Thread(target=self._read, name="rtseg-read", daemon=True))
        for thread in self.threads:
            thread.start()

    def _segment_workers(self) -> list:
        """Two one-thread copies of the model where the Segmenter offers them and has two CPU threads to split;
        otherwise the Segmenter itself, alone. A segmenter shared by several streams (``thread_safe``, e.g.
        :class:`~rtseg.video.streams.SharedSegmenter`) is left as it is: its copies would be shared too."""
        seg = self.seg
        budget = seg.cpu_threads
        if seg.on_gpu or seg.thread_safe or not budget or budget < 2:
            return [seg]
        return seg.replicas(2, budget // 2) or [seg]

    def add_overlay(self, result: Result, alpha: float, picture=None) -> None:
        """The overlay on the consumer's thread, timed, where the segment stage did not make it (the CPU path);
        ``picture`` (a :class:`~rtseg.video.legend.Picture`) draws it instead: visualize mode, legend, palette."""
        if result.overlay is None or picture is not None:
            start = time.perf_counter()
            result.overlay = (picture(result.frame, result.labels) if picture is not None
                              else self.overlay_seg.overlay(result.frame, result.labels, alpha=alpha))
            result.timings["overlay"] = time.perf_counter() - start

    def describe(self) -> str:
        """How frames are segmented in this run (for the summary)."""
        if len(self.workers) > 1:
            threads = getattr(self.workers[0], "threads", None)
            return f"{len(self.workers)} frames side by side, {threads} thread{'s' if threads != 1 else ''} each"
        return "one frame at a time"

    def _put(self, q: queue.Queue, item) -> bool:
        while not self.abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _limit_reached(self, count: int) -> bool:
        if self.max_frames is not None and count >= self.max_frames:
            self.end_reason = f"--max-frames {self.max_frames} reached"
            return True
        return False

    def _read(self) -> None:
        count = 0
        try:
            while not (self.stop_reading.is_set() or self.abort.is_set() or self._limit_reached(count)):
                frame = self.source.read()
                if frame is None:
                    break
                if not self._put(self.frames, (count, frame)):
                    return
                count += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer after the frames already read
            self.source_error = exc
        finally:
            self._put(self.frames, _END)

    def _next_live_frame(self, count: int):
        while not (self.stop_reading.is_set() or self.abort.is_set() or self._limit_reached(count)):
            try:
                return self.source.read(timeout=0.2)
            except TimeoutError:
                continue
            except BaseException as exc:  # noqa: BLE001
                self.source_error = exc
                return None
        return None

    def _next_file_frame(self):
        """The next ``(seq, frame)`` the reader queued, ``_END``, or None once the consumer has gone."""
        while not self.abort.is_set():
            try:
                return self.frames.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _hand_out(self, seq: int, result: Result) -> bool:
        """Queue ``result`` for the consumer once every earlier frame has gone; a segment thread that finishes
        ahead of the other leaves its result here and takes the next frame at once. False: the consumer is gone."""
        with self._order:  # held while queueing, so two threads never interleave their results
            self._finished[seq] = result
            while self._next_out in self._finished:
                if not self._put(self.results, self._finished.pop(self._next_out)):
                    return False
                self._next_out += 1
        return True

    def _segment(self, seg) -> None:
        count = 0
        try:
            while not self.abort.is_set() and self.model_error is None:
                if self.lossless:
                    item = self._next_file_frame()
                    if item is None:
                        return
                    if item is _END:
                        self._put(self.frames, _END)  # for the other segment thread
                        break
                    seq, frame = item
                else:
                    seq, frame = count, self._next_live_frame(count)
                    if frame is None:
                        break
                taken = time.monotonic()
                if self.gpu_overlay is None:
                    r = seg.segment(frame.image)
                else:
                    r = seg.segment(frame.image, overlay=self.gpu_overlay)
                timings = {"decode": frame.decode_s, **r.timings}
                result = Result(frame.index, frame.image, r.labels, timings, frame.captured,
                                staleness=taken - frame.captured, name=frame.name,
                                overlay=getattr(r, "overlay", None))
                if not self._hand_out(seq, result):
                    return
                count += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            self.model_error = exc
        finally:
            with self._order:
                self._running -= 1
                last = self._running == 0
            if last:  # after every result of every segment thread
                self._put(self.results, _END)

    def next(self, timeout: float | None = None):
        """The next result, ``_END`` when the stages are done, or ``None`` after ``timeout`` seconds."""
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def raise_errors(self) -> None:
        if self.model_error is not None:
            raise self.model_error
        if self.source_error is not None:
            error = self.source_error
            if isinstance(error, RtsegError):
                raise SourceFailed(str(error))
            raise error

    def shutdown(self) -> None:
        self.abort.set()
        for thread in self.threads:
            thread.join()


def _as_source(source, live, vid_stride, on_state=None) -> FrameSource:
    if isinstance(source, FrameSource):
        return source
    return open_source(source, live=live, vid_stride=vid_stride, on_state=on_state)


def iter_results(seg, source, max_frames: int | None = None, *, live: bool | None = None, overlay: bool = False,
                 alpha: float = 0.5, vid_stride: int = 1):
    """Yield a :class:`Result` for every frame segmented (files: every frame, in order; live: the newest).

    ``source`` is anything :func:`open_source` takes, or an open :class:`FrameSource` (closed when the loop
    ends). Reading and segmenting run on their own threads while the caller's loop works; nothing is kept after
    it is yielded.
    """
    src = _as_source(source, live, vid_stride)
    stages = _Stages(seg, src, max_frames, alpha if overlay else None)
    try:
        while (result := stages.next()) is not _END:
            if overlay:
                stages.add_overlay(result, alpha)
            result.latency = time.monotonic() - result.captured
            yield result
        stages.raise_errors()
    finally:
        stages.shutdown()
        src.close()


def run_pipeline(seg, source, save=None, save_masks=None, serve=None, stats=None, alpha: float = 0.5,
                 live: bool | None = None, max_frames: int | None = None, *, show: bool = False,
                 vid_stride: int = 1, colour_masks: bool = False, progress: bool = False,
                 handle_signals: bool = True, on_start=None, picture=None,
                 save_quality: str | None = None, stream: str | None = None, stream_sdp=None) -> RunSummary:
    """Segment ``source`` into the sinks asked for and return a :class:`RunSummary`.

    Sinks: ``save`` (H.264 mp4), ``save_masks`` (a folder of raw-id PNGs), ``serve`` (``[HOST:]PORT``, the browser
    view), ``stream`` (``rtp://HOST:PORT``: H.264 over RTP, its SDP written to ``stream_sdp``, default beside
    ``save``), ``show`` (a window), ``stats`` (JSON lines). ``source`` may be an open :class:`FrameSource`; the run
    closes it. SIGINT/SIGTERM stop reading, drain what was read and finalise every sink (``summary.signal`` says
    which). ``progress`` shows a bar (files) or a status line and state changes (streams) on stderr. A source
    that fails mid-run raises :class:`SourceFailed` after the sinks are finalised. ``on_start(outputs)`` is called
    once the sinks are open (the browser view's URL is in ``outputs["serve"]``). ``picture`` (a
    :class:`~rtseg.video.legend.Picture`) draws what the mp4, the window and the browser show.
    """
    from .server import BrowserView
    from .sinks import MaskSink, ThreadedSink, VideoFileSink, WindowSink

    views: list = []
    run_stats: RunStats | None = None

    def on_state(state: str, message: str) -> None:
        if run_stats is not None:
            run_stats.on_state(state)
        for view in views:
            view.set_state(state, message)
        if progress and state in ("reconnecting", "running") and message:  # a stream dropped, or came back
            print(f"\nrtseg: {src.name}: {state}: {message}", file=sys.stderr, flush=True)

    src = _as_source(source, live, vid_stride, on_state)
    src.on_state = on_state
    summary = RunSummary(source=src.name, live=src.live, source_fps=src.fps)
    stages_ref: list = []
    stop = GracefulStop(lambda: stages_ref and stages_ref[0].stop_reading.set(), handle_signals)
    sinks: list = []
    window = None
    try:
        run_stats = RunStats(stats)
        if show:
            window = WindowSink(on_quit=lambda: stages_ref and stages_ref[0].stop_reading.set())
        if serve is not None:  # first: a port in use is the likeliest failure, and it leaves no file behind
            names, colours = picture.legend_entries if picture is not None else (seg.class_names, seg.palette)
            view = BrowserView(serve, names, colours, title=src.name, stats=lambda: live_stats(run_stats, src))
            views.append(view)
            view.set_state(src.state, src.state_message)
            sinks.append(view)
        if save is not None:
            sinks.append(VideoFileSink(save, src.fps, quality=save_quality))
        if save_masks is not None:
            sinks.append(MaskSink(save_masks, seg.colorize if colour_masks else None))
        if stream is not None:
            from .rtp import RtpSink

            sinks.append(RtpSink(stream, stream_sdp, src.fps, beside=save))
    except BaseException:
        for sink in sinks:
            sink.close()
        stop.restore()
        if run_stats is not None:
            run_stats.discard()
        src.close()
        raise
    threaded = [ThreadedSink(sink, run_stats, lossless=not src.live) for sink in sinks]
    if on_start is not None:
        on_start({"serve": views[0].url} if views else {})
    bar = Progress(src.total, src.live, progress, max_frames=max_frames)
    need_overlay = bool(sinks and (save is not None or serve is not None or stream is not None)) or show
    error: BaseException | None = None
    stages = _Stages(seg, src, max_frames, alpha if need_overlay and picture is None else None)
    stages_ref.append(stages)
    summary.segmenting = stages.describe()
    if stop.signum is not None:  # a signal that came while the sinks were opening
        stages.stop_reading.set()
    try:
        while (result := stages.next(timeout=0.5)) is not _END:
            if result is None:
                bar.tick(run_stats, src)
                continue
            if need_overlay:
                stages.add_overlay(result, alpha, picture)
            result.latency = time.monotonic() - result.captured
            for sink in threaded:
                sink.put(result)
            if window is not None:
                window.write(result)
            run_stats.add_result(result, src.drops)
            bar.update(run_stats, src)
        stages.raise_errors()
    except BaseException as exc:  # noqa: BLE001 - sinks are finalised first, then it is raised
        error = exc
    finally:
        stages.shutdown()
        src.close()
        for sink in threaded:
            try:
                summary.outputs[sink.name] = sink.close()
            except BaseException as exc:  # noqa: BLE001
                error = error or exc
            summary.sink_drops += sink.drops
        if window is not None:
            window.close()
        bar.close()
        stop.restore()
    summary.signal = stop.signum
    summary.drops, summary.skipped = src.drops, src.skipped
    summary.reconnects = getattr(src, "reconnects", 0)
    if stop.signum is not None:
        summary.end_reason = f"stopped by {signal.Signals(stop.signum).name}"
    elif error is not None:
        summary.end_reason = f"error: {error}"
    else:
        summary.end_reason = stages.end_reason or src.end_reason or "end of source"
    run_stats.fill(summary)
    run_stats.close(summary)
    if error is not None:
        if isinstance(error, SourceFailed):
            error.summary = summary
        raise error
    return summary

