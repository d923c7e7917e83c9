"""Real test media made on the spot with PyAV: numbered street frames so order, loss and labels can be checked."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


STREET_PERIOD = 120  # street frames repeat after this many (4 s at 30 fps); the index along the top never does


@functools.lru_cache(maxsize=1024)
def _street_bgr(i: int, height: int, width: int) -> np.ndarray:
    from rtseg.demo.video import VideoSpec, frame_at

    rgb, _ = frame_at(VideoSpec(height=height, width=width, fps=30.0), i % STREET_PERIOD)
    return np.ascontiguousarray(rgb[..., ::-1])


def numbered_frame(i: int, height: int, width: int) -> np.ndarray:
    """A BGR frame whose content depends on ``i``: frame ``i`` of the demo's street drive (a scene the shared test
    bundle segments into several classes, different from frame to frame) plus the index in 8x8 blocks along the top."""
    img = _street_bgr(i, height, width).copy()
    for bit in range(min(12, width // 8)):  # the index in binary, black/white 8x8 blocks: survives compression
        img[0:8, bit * 8:(bit + 1) * 8] = 255 if (i >> bit) & 1 else 0
    return img


def read_index(img: np.ndarray) -> int:
    """Recover the index written by :func:`numbered_frame` from a decoded frame."""
    bits = min(12, img.shape[1] // 8)
    return sum(1 << b for b in range(bits) if img[2:6, b * 8 + 2:b * 8 + 6].mean() > 127)


def make_video(path: Path, frames: int, size=(64, 96), fps: int = 30, codec: str = "libx264",
               pix_fmt: str = "yuv420p", options: dict | None = None) -> Path:
    """Encode ``frames`` numbered frames of ``size`` (H, W) into ``path`` with PyAV."""
    import av

    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = options
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(i, height, width), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_faststart_video(path: Path, frames: int, size=(64, 96), fps: int = 30) -> Path:
    """Like :func:`make_video` with the index (moov) first, as streaming-friendly files are: a cut copy still opens."""
    import av

    height, width = size
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(numbered_frame(i, height, width), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def truncated_copy(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def damaged_copy(src: Path, dst: Path, length: int = 3000) -> Path:
    """The same file with random bytes over ``length`` bytes in the middle."""
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid:mid + length] = np.random.default_rng(0).integers(0, 256, length, np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst
