"""Decoders behind the frame sources: PyAV for files and URLs, OpenCV for images and webcams.

A :class:`Decoder` opens on construction (so a bad input fails before anything starts, one line) and
``frames()`` returns an iterator of ``(index, image, name, decode_s)`` with BGR uint8 images and the seconds spent
decoding each (waiting for a stream's next packet is not counted). A reconnectable decoder
(URLs, webcams) can be closed and ``frames()`` called again to reopen it.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import RtsegError, require

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


def import_av():
    return require("av", "video", "av (PyAV)")


def import_cv2():
    return require("cv2", "video", "opencv-python-headless")


class Decoder:
    name: str = ""
    fps: float | None = None
    total: int | None = None          # frames known ahead
    is_live: bool = False             # decides the buffer policy when the caller does not
    reconnectable: bool = False
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    skipped: int = 0                  # undecodable files or packets, skipped with a warning

    def frames(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(": '")[0] or type(exc).__name__


def _url_failure(url: str, exc: Exception, waited: float, timeout: float) -> str:
    """What happened when a stream URL did not open, in words: nobody there, silence, a hang-up or not video."""
    reason = _av_reason(exc)
    errno_ = getattr(exc, "errno", None)
    if errno_ in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH) or "resolve" in reason.lower():
        return f"cannot connect to {url}: {reason}; check the address and that the server is up"
    if waited >= 0.9 * timeout or "Immediate exit" in reason:
        return (f"{url} accepted the connection but sent no video for {waited:.0f} s (timed out); check that the"
                f" server is streaming")
    if errno_ in (errno.ECONNRESET, errno.EPIPE) or "End of file" in reason:
        return f"{url} closed the connection before sending a video stream ({reason}); check the stream's path"
    return (f"{url} answered, but not with a video stream FFmpeg can read ({reason}); check the URL's scheme and"
            f" path")


class AvDecoder(Decoder):
    """A video file or a stream URL through PyAV (FFmpeg); RTSP goes over TCP with open and read timeouts."""

    def __init__(self, target: str, is_url: bool, open_timeout: float, read_timeout: float):
        self.av = import_av()
        self.target, self.name = target, target
        self.is_live = self.reconnectable = is_url
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.container = None
        self._open()
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.total = None if is_url else (stream.frames or None)

    def _open(self) -> None:
        av = self.av
        options = {"rtsp_transport": "tcp"} if self.target.startswith(("rtsp://", "rtsps://")) else {}
        start = time.monotonic()
        try:
            self.container = av.open(self.target, options=options, timeout=(self.open_timeout, self.read_timeout))
        except av.error.FFmpegError as exc:
            if self.is_live:
                raise RtsegError(_url_failure(self.target, exc, time.monotonic() - start, self.open_timeout)) from None
            raise RtsegError(f"cannot read {self.target}: {_av_reason(exc)}; is it a video FFmpeg can decode?"
                             f" (truncated or not a video)") from None
        if not self.container.streams.video:
            self.close()
            raise RtsegError(f"{self.target} has no video stream")
        self.container.streams.video[0].thread_type = "AUTO"

    def frames(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        if self.container is None:
            self._open()
        return self._decode()

    def _decode(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        av = self.av
        container = self.container
        stream = container.streams.video[0]
        index = 0
        packets = container.demux(stream)
        failure, last_pts = None, None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                failure = _av_reason(exc)
                break
            start = time.perf_counter()
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self.skipped += 1
                (log.warning if self.skipped == 1 else log.debug)(
                    "%s: skipping damaged data after frame %d (%s); counted in the summary", self.name, index,
                    _av_reason(exc))
                continue
            for frame in decoded:
                image = frame.to_ndarray(format="bgr24")
                last_pts = frame.pts if frame.pts is not None else last_pts
                yield index, image, "", time.perf_counter() - start
                index += 1
                start = time.perf_counter()
        # the frames the decoder still holds (frame threads, reordering): a file cut short keeps its last
        # decodable frames, as FFmpeg does
        for frame, decode_s in self._flush(stream):
            last_pts = frame.pts if frame.pts is not None else last_pts
            yield index, frame.to_ndarray(format="bgr24"), "", decode_s
            index += 1
        if not self.is_live and (failure is not None or (self.total and index < self.total)):
            # FFmpeg's frame threads drop the frames in flight around a damaged packet; one more pass on slice
            # threads (only for a file that came up short) hands out the decodable frames after the last one out
            for image, decode_s in self._recover(index, last_pts):
                yield index, image, "", decode_s
                index += 1
        if failure is not None:
            raise RtsegError(f"{self.name}: reading stopped after {index} frames: {failure}")
        if self.total and index < self.total:
            damaged = f", {self.skipped} damaged packets skipped" if self.skipped else ""
            raise RtsegError(f"{self.name} ended early: {index} of {self.total} frames decoded{damaged} "
                             "(the file is truncated or damaged)")

    def _recover(self, done: int, last_pts: int | None) -> Iterator[tuple[np.ndarray, float]]:
        """Frames after ``last_pts`` (or, without timestamps, after the first ``done``) on a second pass."""
        av = self.av
        try:
            container = av.open(self.target)
        except av.error.FFmpegError:
            return
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            seen = 0
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except (StopIteration, av.error.FFmpegError):
                    break
                start = time.perf_counter()
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in decoded:
                    later = seen >= done if last_pts is None or frame.pts is None else frame.pts > last_pts
                    if later:
                        yield frame.to_ndarray(format="bgr24"), time.perf_counter() - start
                    seen += 1
                    start = time.perf_counter()
        finally:
            container.close()

    def _flush(self, stream) -> Iterator[tuple]:
        start = time.perf_counter()
        try:
            frames = stream.codec_context.decode(None)
        except (self.av.error.FFmpegError, ValueError):
            return
        for frame in frames:
            yield frame, time.perf_counter() - start
            start = time.perf_counter()

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None


def jpeg_truncated(data: bytes) -> bool:
    """A JPEG whose last scan has no end-of-image marker after it: cut short (libjpeg would fill the rest grey with
    only a "Premature end of JPEG file" on stderr). Scan data cannot hold FF D9 (FF is stuffed as FF 00), and
    bytes after a complete image's EOI (which some cameras append) are allowed."""
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def read_image_file(path: Path) -> tuple[np.ndarray | None, str]:
    """``(BGR image, "")``, or ``(None, why)`` for a file that is not a whole image OpenCV can read."""
    cv2 = import_cv2()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    if jpeg_truncated(data):
        return None, "a truncated JPEG: no end-of-image marker"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return (image, "") if image is not None else (None, "not an image OpenCV can read")


class ImageDecoder(Decoder):
    """One image, a folder or a glob of images, in sorted order; unreadable files are skipped and counted."""

    def __init__(self, paths: list[Path], name: str):
        self.cv2 = import_cv2()
        self.paths, self.name = paths, name
        self.total = len(paths)
        self.fps = None

    def frames(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        cv2 = self.cv2
        # OpenCV would print its own lines about a broken file; rtseg's one warning per file says it all
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        readable = 0
        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            image, why = read_image_file(path)
            if image is None:
                self.skipped += 1
                log.warning("%s: skipped %s (%s)", self.name, path.name, why)
                continue
            readable += 1
            yield index, image, str(path), time.perf_counter() - start
        if not readable:
            raise RtsegError(f"{self.name}: none of its {len(self.paths)} files is a readable image")


class WebcamDecoder(Decoder):
    """A local camera by index through OpenCV."""

    is_live = reconnectable = True

    def __init__(self, index: int):
        self.cv2 = import_cv2()
        self.index, self.name = index, f"webcam {index}"
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            raise RtsegError(f"webcam {index} does not exist (no /dev/video{index}); "
                             "list cameras with `ls /dev/video*`")
        self.capture = None
        self._open()
        self.fps = float(self.capture.get(self.cv2.CAP_PROP_FPS)) or None

    def _open(self) -> None:
        self.capture = self.cv2.VideoCapture(self.index)
        if not self.capture.isOpened():
            self.capture = None
            raise RtsegError(f"webcam {self.index} could not be opened (busy, or no permission?)")

    def frames(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        if self.capture is None:
            self._open()
        return self._read()

    def _read(self) -> Iterator[tuple[int, np.ndarray, str, float]]:
        index = 0
        while True:
            start = time.perf_counter()  # a camera's read waits for its next frame: that wait is counted here
            ok, image = self.capture.read()
            if not ok or image is None:  # a dropped camera: no frame at all, never a black one
                raise RtsegError(f"webcam {self.index}: no frame")
            yield index, image, "", time.perf_counter() - start
            index += 1

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def open_decoder(source: str, open_timeout: float = 10.0, read_timeout: float = 5.0) -> Decoder:
    """Choose and open the decoder for ``source``; one-line :class:`RtsegError` where it cannot be opened."""
    text = source.strip()
    if not text:
        raise RtsegError("the source is an empty string; pass a video, image, folder, glob, webcam index or URL")
    if text.isdigit():
        return WebcamDecoder(int(text))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme:
        if scheme not in URL_SCHEMES:
            raise RtsegError(f"unsupported source scheme {scheme}:// (use one of {', '.join(URL_SCHEMES)})")
        return AvDecoder(text, is_url=True, open_timeout=open_timeout, read_timeout=read_timeout)
    path = Path(text)
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise RtsegError(f"folder {path} is empty; pass a folder of images")
        return ImageDecoder(files, str(path))
    if any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise RtsegError(f"no files match {text}")
        return ImageDecoder(files, text)
    if not path.exists():
        raise RtsegError(f"source {path} does not exist; pass a video, image, folder, glob, webcam index or URL")
    if not os.access(path, os.R_OK):
        raise RtsegError(f"source {path} is not readable (permissions)")
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise RtsegError(f"source {path} is {kind}, not a video or image file; pass a file, folder, webcam index"
                         f" (e.g. 0) or stream URL")
    if path.stat().st_size == 0:
        raise RtsegError(f"source {path} is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        decoder = ImageDecoder([path], str(path))
        image, why = read_image_file(path)
        if image is None:
            raise RtsegError(f"{path} is {why}")
        return decoder
    return AvDecoder(str(path), is_url=False, open_timeout=open_timeout, read_timeout=read_timeout)
