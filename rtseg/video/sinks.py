"""Sinks: an H.264 mp4 (PyAV), mask PNGs, a window; each runs on its own thread behind a bounded queue.

Every sink checks its output before the run starts (an unwritable path is one line, nothing read yet), writes to
a temporary name and renames when finalised, so Ctrl-C or a source error leaves a complete, playable file.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from .decoders import import_av, import_cv2
from .outputs import _check_folder

log = logging.getLogger(__name__)


def _even(image: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: repeat the last row/column where one is odd."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return image


def choose_video_codec(av) -> tuple[str, str]:
    """(codec, container format): H.264 in mp4 where an encoder exists, else MJPEG in AVI."""
    for name in ("libx264", "libopenh264", "h264"):
        try:
            av.codec.Codec(name, "w")
            return name, "mp4"
        except Exception:  # noqa: BLE001, S112 - PyAV raises different errors for an unknown encoder by version
            continue
    return "mjpeg", "avi"


#: --save-quality -> the libx264 preset (CRF 23 throughout), chosen by benchmarks/encode.py (1080p, one thread):
#: ultrafast 13 CPU ms/frame, PSNR 35.6 dB, 229 KiB/frame; veryfast (the default before) 30 ms, 32.4 dB, 81 KiB;
#: medium 88 ms, 35.5 dB, 74 KiB. "fast" costs the least CPU at no loss of PSNR, in bigger files.
SAVE_QUALITY = {"fast": "ultrafast", "balanced": "veryfast", "compact": "medium"}
DEFAULT_SAVE_QUALITY = "fast"


class VideoFileSink:
    """Every frame it is given, at the source's frame rate, into an mp4 browsers play (H.264, yuv420p).

    ``preset`` is libx264's (default: ``SAVE_QUALITY[quality]``), ``threads`` its encoder threads (default 1: the
    pipeline's other stages hold the other cores; the encoder's own frame threads would add latency, not speed)."""

    name = "save"

    def __init__(self, path, fps: float | None, codec: str | None = None, quality: str | None = None,
                 preset: str | None = None, threads: int = 1):
        quality = quality or DEFAULT_SAVE_QUALITY
        if quality not in SAVE_QUALITY:
            raise RtsegError(f"--save-quality {quality!r}: choose one of {', '.join(SAVE_QUALITY)}")
        self.preset, self.threads = preset or SAVE_QUALITY[quality], int(threads)
        self.av = import_av()
        self.cv2 = import_cv2()
        path = Path(path)
        self.codec, fmt = (codec, "mp4") if codec else choose_video_codec(self.av)
        if fmt == "avi" and path.suffix.lower() != ".avi":
            path = path.with_suffix(".avi")
            print(f"rtseg: note: no H.264 encoder in this FFmpeg build; writing MJPG in {path} instead",
                  file=sys.stderr)
        _check_folder(path, "--save")
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self.rate = Fraction(fps or 30).limit_denominator(1001)
        try:
            self.container = self.av.open(str(self.tmp), "w", format=fmt,
                                          options={"movflags": "+faststart"} if fmt == "mp4" else {})
        except (OSError, self.av.error.FFmpegError) as exc:
            raise RtsegError(f"--save {path}: cannot write ({getattr(exc, 'strerror', exc)})") from None
        self.stream = None
        self.frames = 0
        self.resized = False
        self.broken = False

    def _start(self, height: int, width: int) -> None:
        stream = self.container.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuvj420p" if self.codec == "mjpeg" else "yuv420p"
        if self.codec == "libx264":
            stream.options = {"preset": self.preset, "crf": "23", "threads": str(self.threads)}
        stream.time_base = 1 / self.rate
        self.stream = stream
        self.i420 = stream.pix_fmt == "yuv420p"  # asked once, not of PyAV per frame

    def write(self, result) -> None:
        image = result.overlay if result.overlay is not None else result.frame
        if self.stream is None:
            self._start(*image.shape[:2])
        if (image.shape[0] + image.shape[0] % 2, image.shape[1] + image.shape[1] % 2) != (
                self.stream.height, self.stream.width):
            if not self.resized:  # a stream that changed resolution: keep one video, scaled to the first size
                log.warning("--save: frame size changed to %dx%d; scaling to %dx%d", image.shape[1],
                            image.shape[0], self.stream.width, self.stream.height)
                self.resized = True
            image = self.cv2.resize(image, (self.stream.width, self.stream.height))
        frame = self._to_frame(_even(image))
        frame.pts = self.frames
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (OSError, self.av.error.FFmpegError) as exc:
            raise self._failed(exc) from None
        self.frames += 1

    def _failed(self, exc: BaseException) -> RtsegError:
        """A write that failed (a full disk, a removed folder): one line; close() then leaves no .partial."""
        self.broken = True
        return RtsegError(f"--save {self.path}: could not write the video ({getattr(exc, 'strerror', None) or exc});"
                          f" free some space or choose another path")

    def _to_frame(self, image: np.ndarray):
        """The encoder's input frame. For yuv420p, OpenCV converts (BT.601, limited range: what players assume for
        an untagged stream) in about a tenth of the CPU time PyAV takes to copy the BGR frame in and convert it."""
        if self.i420:
            return self.av.VideoFrame.from_ndarray(self.cv2.cvtColor(image, self.cv2.COLOR_BGR2YUV_I420),
                                                   format="yuv420p")
        return self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")

    def close(self) -> dict:
        if self.container is None:
            return {}
        error = None
        try:
            if self.stream is not None and not self.broken:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
        except (OSError, self.av.error.FFmpegError) as exc:
            error = self._failed(exc)
        try:
            self.container.close()
        except (OSError, self.av.error.FFmpegError) as exc:
            error = error or self._failed(exc)
        finally:
            self.container = None
        if error is None and self.frames and not self.broken:
            try:  # the file on disk is what was written: an mp4 whose index (moov) made it
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
                if self.tmp.stat().st_size == 0:
                    error = self._failed(OSError(0, "the file is empty on disk"))
            except OSError as exc:
                error = self._failed(exc)
        if self.broken or not self.frames:
            self.tmp.unlink(missing_ok=True)
            if error is not None:
                raise error
            return {"path": None, "frames": 0}  # nothing written, or write() already reported the failure
        os.replace(self.tmp, self.path)
        return {"path": str(self.path), "frames": self.frames, "codec": self.codec}


class MaskSink:
    """``<dir>/<index:06d>.png``: raw class ids, one channel (uint8; uint16 above 255 classes); colour ones too."""

    name = "masks"

    def __init__(self, folder, colorize=None):
        self.cv2 = import_cv2()
        self.folder = Path(folder)
        self.created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if colorize is not None:
                (self.folder / "colour").mkdir(exist_ok=True)
        except OSError as exc:
            raise RtsegError(f"--save-masks {self.folder}: cannot create the folder ({exc.strerror})") from None
        if not os.access(self.folder, os.W_OK):
            raise RtsegError(f"--save-masks {self.folder}: folder is not writable")
        self.colorize = colorize
        self.frames = 0

    def _write(self, path: Path, image: np.ndarray) -> None:
        """Encoded in memory, written and flushed by Python (a full disk raises, never a silent 0-byte PNG),
        its size checked on disk, then renamed into place."""
        ok, png = self.cv2.imencode(".png", image)
        if not ok:
            raise RtsegError(f"--save-masks: could not encode {path.name}")
        data = png.tobytes()
        tmp = path.with_name(f".{path.stem}.partial.png")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if tmp.stat().st_size != len(data):
                raise OSError(0, f"{tmp.stat().st_size} of {len(data)} bytes on disk")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RtsegError(f"--save-masks {self.folder}: could not write {path.name} ({exc.strerror or exc});"
                             f" free some space or choose another folder") from None

    def write(self, result) -> None:
        labels = result.labels
        ids = labels if labels.dtype == np.uint8 else labels.astype(np.uint16)
        self._write(self.folder / f"{result.index:06d}.png", ids)
        if self.colorize is not None:
            self._write(self.folder / "colour" / f"{result.index:06d}.png", self.colorize(labels))
        self.frames += 1

    def close(self) -> dict:
        if not self.frames and self.created:  # a run that never started leaves no empty folder behind
            for folder in (self.folder / "colour", self.folder):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            return {"path": None, "frames": 0}
        return {"path": str(self.folder), "frames": self.frames}


def gui_missing_reason() -> str | None:
    """None where OpenCV can open a window here, else why not (and what to use instead)."""
    cv2 = import_cv2()
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return "--show needs OpenCV with a GUI (this one is headless); view the run in a browser with --serve PORT"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "--show needs a display (DISPLAY is not set); view the run in a browser with --serve PORT"
    return None


class WindowSink:
    """An OpenCV window; runs on the main thread (GUI toolkits want that). ``q`` or Esc stops the run."""

    name = "show"

    def __init__(self, on_quit):
        if reason := gui_missing_reason():
            raise RtsegError(reason)
        self.cv2 = import_cv2()
        self.on_quit = on_quit
        self.window = "rtseg"

    def write(self, result) -> None:
        self.cv2.imshow(self.window, result.overlay if result.overlay is not None else result.frame)
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self) -> dict:
        self.cv2.destroyAllWindows()
        return {}


_STOP = object()


class ThreadedSink:
    """Runs a sink on its own thread behind a bounded queue.

    Lossless runs block when the queue is full (every frame reaches the sink); live runs drop the oldest queued
    result instead and count it, so a slow sink never holds the model back.
    """

    def __init__(self, sink, stats, lossless: bool, maxsize: int = 8):
        self.sink, self.stats, self.lossless = sink, stats, lossless
        self.name = sink.name
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.drops = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"rtseg-sink-{self.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            if self.error is not None:
                continue  # keep draining so producers never block on a dead sink
            start = time.perf_counter()
            try:
                self.sink.write(item)
            except BaseException as exc:  # noqa: BLE001 - reported by put() and close()
                self.error = exc
            self.stats.add_stage(self.name, time.perf_counter() - start)

    def put(self, result) -> None:
        if self.error is not None:
            raise RtsegError(f"{self.name} failed: {self.error}")
        if self.lossless:
            self.queue.put(result)
            return
        while True:
            try:
                self.queue.put_nowait(result)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.drops += 1
                except queue.Empty:
                    pass

    def close(self) -> dict:
        """Let the sink finish what is queued, then finalise it (even after an error, so files stay valid)."""
        self.queue.put(_STOP)
        self.thread.join()
        outputs = self.sink.close()
        if self.error is not None:
            error = self.error
            raise error if isinstance(error, RtsegError) else RtsegError(f"{self.name} failed: {error}")
        return outputs
