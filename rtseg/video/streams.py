"""Many streams, one segmenter: frames from every stream batched together (what DeepStream's ``nvstreammux`` does).

:func:`run_streams` runs one :func:`~rtseg.video.run_pipeline` per source, each on its own thread with its own
order, drop policy, sinks and stats, all feeding one segmenter. A local :class:`~rtseg.runtime.Segmenter` is
wrapped in a :class:`SharedSegmenter`, which gathers the frames the streams hand in at about the same time into
one ``segment_batch`` call; a remote service (``rtseg serve``) batches concurrent requests itself, so a
``RemoteSegmenter`` is shared as it is.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future

_STOP = object()


class SharedSegmenter:
    """A Segmenter that many threads may call at once; their frames meet in batches of up to ``max_batch``.

    A frame waits at most ``wait_ms`` for others to join its batch. One worker thread owns the wrapped
    segmenter (a Segmenter reuses its input buffers, so it must not run two frames at once). ``batch_sizes``
    counts the batches by size. The wrapped segmenter stays open: its owner closes it. Implements
    :class:`~rtseg.runtime.protocol.SegmenterProtocol`: overlays are made on the CPU, after the batch.
    """

    thread_safe = True
    on_gpu = False  # the overlay is made on the caller's side, from the labels
    cpu_threads = None  # one worker owns the wrapped segmenter: no copies to split frames over

    def __init__(self, seg, max_batch: int = 8, wait_ms: float = 2.0):
        self.seg, self.max_batch, self.wait = seg, max(1, max_batch), max(0.0, wait_ms) / 1000.0
        self.num_classes, self.class_names, self.palette = seg.num_classes, seg.class_names, seg.palette
        self.trained_classes, self.untrained = seg.trained_classes, seg.untrained
        self.batch_sizes: collections.Counter = collections.Counter()
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="rtseg-shared-segmenter", daemon=True)
        self._worker.start()

    def segment(self, frame, return_score: bool = False, overlay: float | None = None):
        done: Future = Future()
        self._queue.put((frame, return_score, done))
        result = done.result()
        if overlay is not None:
            result.overlay = self.seg.overlay(frame, result.labels, overlay)
        return result

    def segment_batch(self, frames, return_score: bool = False):
        futures = []
        for frame in frames:
            futures.append(Future())
            self._queue.put((frame, return_score, futures[-1]))
        return [f.result() for f in futures]

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join()

    def __enter__(self) -> SharedSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def overlay(self, frame, labels, alpha: float = 0.5, out=None):
        return self.seg.overlay(frame, labels, alpha, out=out)

    def colorize(self, labels):
        return self.seg.colorize(labels)

    def describe(self) -> dict:
        return self.seg.describe()

    def replicas(self, count: int, threads: int) -> list:
        return []  # copies of a shared segmenter would be shared too

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.perf_counter() + self.wait
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)  # finish this batch, then stop
                    break
                batch.append(item)
            self._segment(batch)

    def _segment(self, batch) -> None:
        self.batch_sizes[len(batch)] += 1
        frames = [frame for frame, _, _ in batch]
        score = any(s for _, s, _ in batch)
        try:
            results = self.seg.segment_batch(frames, score)
        except Exception:  # noqa: BLE001 - find the frame at fault; the others still get their results
            for frame, s, done in batch:
                try:
                    done.set_result(self.seg.segment(frame, s))
                except Exception as exc:  # noqa: BLE001 - raised in the stream that sent the frame
                    done.set_exception(exc)
            return
        for (_, _, done), result in zip(batch, results):
            done.set_result(result)


def run_streams(seg, sources: list, outputs: list[dict] | None = None, *, max_batch: int = 8,
                wait_ms: float = 2.0, **common) -> list:
    """Run every source through one segmenter; return one :class:`~rtseg.video.stats.RunSummary` per source.

    ``outputs[k]`` holds stream k's own sinks (``save``, ``save_masks``, ``stats``, ...); ``common`` is passed to
    every stream's :func:`~rtseg.video.run_pipeline` (``live``, ``max_frames``, ``alpha``, ...). Every stream
    runs to its end; if any failed, the first failure is raised after all have finished.
    """
    from .pipeline import run_pipeline

    outputs = outputs or [{} for _ in sources]
    if len(outputs) != len(sources):
        raise ValueError("one outputs dict per source")
    shared = seg if seg.thread_safe else SharedSegmenter(seg, max_batch, wait_ms)
    summaries: list = [None] * len(sources)
    errors: list = [None] * len(sources)

    def run(k):
        try:
            summaries[k] = run_pipeline(shared, sources[k], handle_signals=False, **common, **outputs[k])
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once every stream has finished
            errors[k] = exc

    threads = [threading.Thread(target=run, args=(k,), name=f"rtseg-stream-{k}") for k in range(len(sources))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if shared is not seg:
            shared.close()
    for exc in errors:
        if exc is not None:
            raise exc
    return summaries
