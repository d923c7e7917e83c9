"""Frame sources: video files, images, folders and globs of images, webcams and stream URLs.

A :class:`FrameSource` hands out :class:`Frame` objects with ``read()`` (blocking; ``None`` once it has ended).
The buffer policy follows from the kind of source, not from a flag deep inside:

* **lossless** (files, images, folders; or ``live=False``): every frame, in order; reading blocks the caller.
* **live** (webcams, URLs; or ``live=True``): a grabber thread decodes continuously and keeps only the newest
  decoded frame; every frame replaced before anyone read it is counted in :attr:`FrameSource.drops`. A live source
  that drops reconnects with backoff, reports each state change, and never hands out a frame from before the drop.

A video file read live is paced at its frame rate, so it behaves like a camera (what tests and demos need).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import RtsegError
from .decoders import Decoder, open_decoder

log = logging.getLogger(__name__)

#: states a source moves through; ``on_state(state, message)`` is called on every change
STATES = ("starting", "running", "reconnecting", "ended", "error")

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass
class Frame:
    """One decoded frame and when it was captured (``time.monotonic()`` right after decoding)."""

    index: int            # position in the source (for folders: in the sorted listing, skipped files included)
    image: np.ndarray     # (H, W, 3) uint8 BGR
    captured: float
    decode_s: float
    name: str = ""        # the image file, where there is one


class FrameSource:
    """Common surface: ``read()``, ``close()``, context manager, and what a run reports about its input."""

    def __init__(self, decoder: Decoder, live: bool, vid_stride: int = 1,
                 on_state: Callable[[str, str], None] | None = None):
        if vid_stride < 1:
            raise RtsegError(f"--vid-stride must be at least 1, got {vid_stride}")
        self.decoder = decoder
        self.name = decoder.name
        self.live = live
        self.vid_stride = vid_stride
        self.drops = 0                   # live: decoded frames replaced before they were read
        self.on_state = on_state
        self.state = "starting"
        self.state_message = ""
        self.end_reason = ""             # why read() returned None ("" while running)

    @property
    def fps(self) -> float | None:
        return self.decoder.fps

    @property
    def skipped(self) -> int:
        """Files or packets that could not be decoded and were skipped with a warning."""
        return self.decoder.skipped

    @property
    def total(self) -> int | None:
        """Frames this source will hand out, where known ahead (files and folders)."""
        total = self.decoder.total
        if total is None or self.live:
            return None
        return (total + self.vid_stride - 1) // self.vid_stride

    def _set_state(self, state: str, message: str = "") -> None:
        if state == self.state and message == self.state_message:
            return
        self.state, self.state_message = state, message
        log.info("source %s: %s %s", self.name, state, message)
        if self.on_state is not None:
            self.on_state(state, message)

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        self.decoder.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class LosslessSource(FrameSource):
    """Every frame in order; ``read()`` decodes the next one (the caller's thread does the work)."""

    def __init__(self, decoder: Decoder, vid_stride: int = 1, on_state=None):
        super().__init__(decoder, live=False, vid_stride=vid_stride, on_state=on_state)
        self._frames = decoder.frames()
        self._set_state("running")

    def read(self) -> Frame | None:
        if self.state in ("ended", "error"):
            return None
        while True:
            try:
                item = next(self._frames, None)
            except RtsegError as exc:
                self.end_reason = str(exc)
                self._set_state("error", str(exc))
                raise
            if item is None:
                self.end_reason = "end of source"
                self._set_state("ended", self.end_reason)
                return None
            index, image, name, decode_s = item
            if index % self.vid_stride == 0:
                return Frame(index, image, time.monotonic(), decode_s, name)


class LiveSource(FrameSource):
    """Newest frame only, decoded continuously on a grabber thread; reconnects where the decoder allows."""

    def __init__(self, decoder: Decoder, vid_stride: int = 1, on_state=None, pace: bool = False,
                 backoff: tuple[float, float] = (0.5, 8.0)):
        super().__init__(decoder, live=True, vid_stride=vid_stride, on_state=on_state)
        self._pace = pace and bool(decoder.fps)
        self._backoff = backoff
        self._cond = threading.Condition()
        self._newest: Frame | None = None
        self._stop = threading.Event()
        self._finished = False
        self._error: RtsegError | None = None
        self.reconnects = 0
        # frame indices keep counting across reconnects (each connection's decoder counts from 0 again): masks
        # and stats of a later connection never reuse an earlier one's numbers
        self._base, self._last = 0, -1
        self._thread = threading.Thread(target=self._grab, name=f"rtseg-grab-{self.name}", daemon=True)
        self._set_state("running")
        self._thread.start()

    def _grab(self) -> None:
        """The grabber thread owns the decoder: it opens, reads, reopens and, whatever ends it, closes it (closing a
        PyAV container from another thread under a read crashes the process)."""
        try:
            self._grab_until_stopped()
        finally:
            self.decoder.close()

    def _grab_until_stopped(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                frames = self.decoder.frames()
                if attempt:
                    self._set_state("running", f"reconnected after {attempt} attempt(s)")
                attempt = 0
                self._pump(frames)
                message, failed = "stream ended", False
            except RtsegError as exc:
                message, failed = str(exc), True
            if self._stop.is_set():
                break
            if not self.decoder.reconnectable:
                self._finish(message if failed else "end of source", error=failed)
                return
            # Never hand out a frame from before the drop: the slot is emptied before waiting.
            with self._cond:
                self._newest = None
            self._base = self._last + 1
            attempt += 1
            self.reconnects += 1
            wait = min(self._backoff[0] * 2 ** (attempt - 1), self._backoff[1])
            self._set_state("reconnecting", f"{message}; retry {attempt} in {wait:.1f} s")
            self.decoder.close()
            self._stop.wait(wait)
        self._finish("stopped", error=False)

    def _pump(self, frames) -> None:
        start_wall = time.monotonic()
        first_index = None
        for index, image, name, decode_s in frames:
            if self._stop.is_set():
                return
            if self._pace:  # a file read live plays at its own rate, like a camera
                first_index = index if first_index is None else first_index
                due = start_wall + (index - first_index) / self.decoder.fps
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            index = self._last = self._base + index
            if index % self.vid_stride == 0:
                frame = Frame(index, image, time.monotonic(), decode_s, name)
                with self._cond:
                    if self._newest is not None:
                        self.drops += 1
                    self._newest = frame
                    self._cond.notify_all()

    def _finish(self, message: str, error: bool) -> None:
        with self._cond:
            self._finished = True
            self.end_reason = message
            if error:
                self._error = RtsegError(f"{self.name}: {message}")
            self._cond.notify_all()
        self._set_state("error" if error else "ended", message)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not handed out before; waits for one. ``None`` once the source has ended."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._newest is not None or self._finished, timeout)
            if self._newest is not None:
                frame, self._newest = self._newest, None
                return frame
            if self._error is not None:
                raise self._error
            if not ok:
                raise TimeoutError
            return None

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # The grabber notices within the decoder's open or read timeout at worst, and closes the decoder as it ends.
        self._thread.join(timeout=max(self.decoder.open_timeout, self.decoder.read_timeout) + 2.0)


def open_source(source: str | int | os.PathLike, live: bool | None = None, *, vid_stride: int = 1,
                on_state: Callable[[str, str], None] | None = None, open_timeout: float = 10.0,
                read_timeout: float = 5.0) -> FrameSource:
    """Open a file, image, folder, glob, webcam index (``"0"``) or URL as a :class:`FrameSource`.

    ``live=None`` chooses from the kind of source: files and images lossless, webcams and URLs live.
    A source that cannot be opened raises a one-line :class:`RtsegError`.
    """
    decoder = open_decoder(str(source), open_timeout=open_timeout, read_timeout=read_timeout)
    if live is None:
        live = decoder.is_live
    if live:
        return LiveSource(decoder, vid_stride, on_state, pace=not decoder.is_live)
    return LosslessSource(decoder, vid_stride, on_state)

