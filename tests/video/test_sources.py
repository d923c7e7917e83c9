"""Sources on real media: several codecs and sizes in order, images, globs, stride, a file played live."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.video import open_source
from rtseg.video.stats import LatencyHistogram

from .media import make_video, numbered_frame, read_index


@pytest.mark.parametrize("name, codec, size, pix_fmt", [
    ("h264.mp4", "libx264", (72, 128), "yuv420p"),
    ("mpeg4.avi", "mpeg4", (90, 160), "yuv420p"),
    ("mjpeg.avi", "mjpeg", (64, 96), "yuvj420p"),
    ("vp9.webm", "libvpx-vp9", (48, 112), "yuv420p"),
    ("ffv1.mkv", "ffv1", (33, 97), "bgr0"),  # odd size, lossless
])
def test_every_frame_in_order_across_codecs_and_sizes(tmp_path, name, codec, size, pix_fmt):
    video = make_video(tmp_path / name, 24, size, codec=codec, pix_fmt=pix_fmt)
    with open_source(video) as source:
        assert not source.live
        frames = list(source)
    assert [f.index for f in frames] == list(range(24))
    assert [read_index(f.image) for f in frames] == list(range(24))
    assert all(f.image.shape == (*size, 3) and f.image.dtype == np.uint8 for f in frames)
    assert source.state == "ended" and source.drops == 0


def test_opencv_written_video_and_stride(tmp_path):
    path = tmp_path / "cv.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for i in range(20):
        writer.write(numbered_frame(i, 64, 96))
    writer.release()
    with open_source(path, vid_stride=3) as source:
        assert source.total == 7
        assert [(f.index, read_index(f.image)) for f in source] == [(i, i) for i in range(0, 20, 3)]
    with pytest.raises(RtsegError, match="--vid-stride"):
        open_source(path, vid_stride=0)


def test_image_glob_and_single_image(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), numbered_frame(i, 40, 96))
    with open_source(str(tmp_path / "f*.png")) as source:
        assert [(f.index, read_index(f.image), f.name.endswith(f"f{f.index}.png")) for f in source] == [
            (0, 0, True), (1, 1, True), (2, 2, True)]
    with open_source(tmp_path / "f1.png") as source:
        assert [read_index(f.image) for f in source] == [1]
    (tmp_path / "fake.png").write_text("not a png")
    with pytest.raises(RtsegError, match="not an image"):
        open_source(tmp_path / "fake.png")


def test_a_file_played_live_keeps_only_the_newest_frame(tmp_path):
    video = make_video(tmp_path / "cam.mp4", 45, (48, 64), fps=30)
    states = []
    with open_source(video, live=True, on_state=lambda s, m: states.append(s)) as source:
        assert source.live and source.total is None
        taken = []
        while (frame := source.read()) is not None:
            taken.append(frame.index)
            time.sleep(0.1)  # a consumer slower than the 30 fps source
    assert taken == sorted(taken) and 8 <= len(taken) <= 25
    assert source.drops == 45 - len(taken)
    assert states[-1] == "ended"


def test_latency_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=-4, sigma=1.0, size=5000)
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    for q in (50, 90, 99):
        assert hist.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.03)
    assert hist.summary()["n"] == 5000 and hist.counts.nbytes < 16_000


def test_http_mjpeg_stream_is_a_live_source(tmp_path):
    """An MJPEG-over-HTTP camera, played by rtseg's own browser view (a real HTTP server on 127.0.0.1)."""
    import threading

    from rtseg.video.server import BrowserView

    view = BrowserView("0")
    stop = threading.Event()

    def camera():
        i = 0
        while not stop.wait(1 / 30):
            view.publish(numbered_frame(i, 64, 96))
            i += 1

    feeder = threading.Thread(target=camera)
    feeder.start()
    try:
        with open_source(view.url + "stream.mjpg") as source:
            assert source.live
            seen = [read_index(source.read(timeout=10).image) for _ in range(10)]
    finally:
        stop.set()
        feeder.join()
        view.close()
    assert seen == sorted(seen) and len(set(seen)) == 10
