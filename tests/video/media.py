"""Real test media made on the spot with PyAV: numbered frames so order and loss can be checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def numbered_frame(i: int, height: int, width: int) -> np.ndarray:
    """A BGR frame whose content depends on ``i``: moving bands plus the index in 8x8 blocks along the top."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xx * 4 + i * 7) % 256
    img[..., 1] = (yy * 3 + i * 5) % 256
    img[..., 2] = ((xx + yy) // 8 * 40 + i * 11) % 256
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
