"""``--save-quality``: the H.264 sink's preset, chosen by benchmarks/encode.py, and what each level writes.

Real libx264 through PyAV: each level encodes the same street frames; every level decodes to the frames given
within the encoder's loss, "compact" (medium) writes a smaller file than "fast" (ultrafast), and a level that does
not exist is one line.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.video.sinks import DEFAULT_SAVE_QUALITY, SAVE_QUALITY, VideoFileSink

from ..conftest import street_bgr

av = pytest.importorskip("av")


def _write(path, quality, frames):
    sink = VideoFileSink(path, 30, quality=quality)
    for f in frames:
        sink.write(SimpleNamespace(overlay=f, frame=f))
    sink.close()
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name in ("h264", "libx264") or sink.codec != "libx264"
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_each_level_writes_what_it_was_given(tmp_path):
    frames = [np.roll(f, 4 * i, axis=1) for i, f in enumerate(street_bgr(12, 144, 256))]
    i420 = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420) for f in frames]
    sizes = {}
    for quality in SAVE_QUALITY:
        decoded = _write(tmp_path / f"{quality}.mp4", quality, frames)
        assert len(decoded) == len(frames)
        psnr = [cv2.PSNR(a, b) for a, b in zip(i420, decoded)]
        assert min(psnr) > 28, (quality, psnr)
        sizes[quality] = (tmp_path / f"{quality}.mp4").stat().st_size
    assert sizes["compact"] < sizes["fast"]
    assert DEFAULT_SAVE_QUALITY == "fast" and SAVE_QUALITY["fast"] == "ultrafast"


def test_an_unknown_level_is_one_line(tmp_path):
    with pytest.raises(RtsegError, match="--save-quality 'best'") as exc:
        VideoFileSink(tmp_path / "x.mp4", 30, quality="best")
    assert "\n" not in str(exc.value) and not (tmp_path / "x.mp4").exists()
