"""Unlabelled frames for parity runs: a folder of images, a video file, or the images of a labelled set.

Videos are read by ``rtseg run``'s own decoder (PyAV), so a file cut short gives the same frames and the same
``ended early: N of M frames decoded`` line as ``rtseg run``, with none of FFmpeg's raw log lines."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from ..video.decoders import AvDecoder, read_image_file
from .readers import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 ``(H, W, 3)`` image, or a one-line error (a truncated JPEG too: never half a grey frame)."""
    frame, why = read_image_file(path)
    if frame is None:
        raise RtsegError(f"cannot read the image {path} ({why}); is it a whole image file?")
    return frame


@dataclass
class FrameSet:
    """Frames in a fixed order, with their count where it is known (for the progress bar)."""

    path: Path
    count: int | None
    images: list[Path] | None = None  # None: a video

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.images is not None:
            for p in self.images:
                yield p.name, read_image(p)
            return
        decoder = AvDecoder(str(self.path), is_url=False, open_timeout=10.0, read_timeout=5.0)
        try:
            # a file cut short: its decodable frames, then RtsegError("... ended early: N of M frames decoded")
            for index, frame, _, _ in decoder.frames():
                yield f"frame {index}", frame
        finally:
            decoder.close()


def open_frames(path: str | Path, layout: str = "auto", split: str | None = None) -> FrameSet:
    """The frames at ``path``: images directly in a folder (sorted), a video file, or a labelled set's images."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return FrameSet(path, 1, [path])
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise RtsegError(f"--data {path} is neither an image, a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder")
        try:
            decoder = AvDecoder(str(path), is_url=False, open_timeout=10.0, read_timeout=5.0)
        except RtsegError:
            raise RtsegError(f"cannot open the video {path}; is it a video file FFmpeg can decode?") from None
        count = decoder.total
        decoder.close()
        return FrameSet(path, count)
    if not path.is_dir():
        what = "is not a file or folder (a device, FIFO or socket)" if path.exists() else "does not exist"
        raise RtsegError(f"--data {path} {what}; pass a folder of images or a video")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return FrameSet(path, len(images), images)
    from .readers import AmbiguousLayout, open_dataset

    try:
        ds = open_dataset(path, layout, split=split)
    except AmbiguousLayout:
        raise
    except RtsegError:
        raise RtsegError(f"--data {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no labelled set;"
                         f" pass a folder of images or a video") from None
    return FrameSet(path, len(ds.samples), [s.image for s in ds.samples])
