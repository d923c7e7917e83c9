"""Unlabelled frames for parity runs: a folder of images, a video file, or the images of a labelled set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from ..video.decoders import import_cv2
from .readers import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 ``(H, W, 3)`` image, or a one-line error."""
    cv2 = import_cv2()
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise RtsegError(f"cannot read the image {path}; is it an image file?")
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
        cv2 = import_cv2()
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield f"frame {index}", frame
                index += 1
        finally:
            cap.release()


def open_frames(path: str | Path, layout: str = "auto", split: str | None = None) -> FrameSet:
    """The frames at ``path``: images directly in a folder (sorted), a video file, or a labelled set's images."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return FrameSet(path, 1, [path])
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise RtsegError(f"--data {path} is neither an image, a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder")
        cv2 = import_cv2()
        cap = cv2.VideoCapture(str(path))
        opened, count = cap.isOpened(), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if not opened:
            raise RtsegError(f"cannot open the video {path}; is it a video file OpenCV can decode?")
        return FrameSet(path, count if count > 0 else None)
    if not path.is_dir():
        what = "is not a file or folder (a device, FIFO or socket)" if path.exists() else "does not exist"
        raise RtsegError(f"--data {path} {what}; pass a folder of images or a video")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return FrameSet(path, len(images), images)
    from .readers import open_dataset

    try:
        ds = open_dataset(path, layout, split=split)
    except RtsegError:
        raise RtsegError(f"--data {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no labelled set;"
                         f" pass a folder of images or a video") from None
    return FrameSet(path, len(ds.samples), [s.image for s in ds.samples])
