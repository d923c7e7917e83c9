"""``rtseg run ... --stream rtp://HOST:PORT`` (issue #23, item 4): FFmpeg, reading the SDP file the run writes
beside its saved video, decodes the RTP stream, and the frames it decodes are the saved mp4's frames within codec
loss, in order. Everything on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .conftest import av, require_binary
from .media import make_video

ROOT = Path(__file__).resolve().parents[2]
H, W, FPS, FRAMES = 96, 128, 10, 40


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def test_rtp_stream_read_back_by_ffmpeg_equals_the_saved_video(bundle, tmp_path):
    ffmpeg = require_binary("ffmpeg", "ffmpeg")
    video = make_video(tmp_path / "in.mp4", FRAMES, (H, W), fps=FPS)
    saved, port = tmp_path / "out.mp4", _free_udp_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "rtseg", "run", str(bundle), "--source", str(video), "--live",
                            "--save", str(saved), "--stream", f"rtp://127.0.0.1:{port}", "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    sdp = saved.with_suffix(".sdp")  # beside the saved video
    deadline = time.monotonic() + 60
    while not sdp.is_file() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert sdp.is_file(), run.stderr.read() if run.poll() is not None else "no SDP file within 60 s"
    assert f"m=video {port} RTP/AVP 96" in sdp.read_text()
    raw = tmp_path / "got.raw"
    reader = subprocess.Popen([ffmpeg, "-loglevel", "error", "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
                               "-f", "rawvideo", "-pix_fmt", "bgr24", "-y", str(raw)],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.wait(120) == 0, run.stderr.read()
    time.sleep(1.0)
    _, reader_err = reader.communicate("q", timeout=30)  # ffmpeg's own quit key: it closes its output cleanly

    received = np.fromfile(raw, np.uint8).reshape(-1, H, W, 3)
    reference = _decode(saved)
    assert len(reference) >= FRAMES // 2  # --live may drop a frame the model was too busy for: both sinks skip it
    # The stream plays at the file's rate (--live) and starts at a keyframe (one a second): the frames FFmpeg
    # joined for are most of them, each the saved frame of its index within codec loss, in order.
    assert len(received) >= len(reference) // 2, (
        f"FFmpeg decoded {len(received)} of {len(reference)} frames: {reader_err[-1000:]}")
    matched = []
    for frame in received:
        errors = [float(np.abs(frame.astype(np.int16) - ref.astype(np.int16)).mean()) for ref in reference]
        best = int(np.argmin(errors))
        assert errors[best] <= 4.0, f"a received frame is {errors[best]:.1f} grey levels from every saved one"
        matched.append(best)
    assert matched == sorted(set(matched)), f"received frames out of order or repeated: {matched}"
    assert matched[-1] >= len(reference) - 4  # FFmpeg may hold the last packets when it is told to quit


def test_stream_to_an_unknown_host_is_one_line(bundle, tmp_path):
    video = make_video(tmp_path / "in.mp4", 4, (H, W), fps=FPS)
    out = subprocess.run([sys.executable, "-m", "rtseg", "run", str(bundle), "--source", str(video), "--save",
                          str(tmp_path / "o.mp4"), "--stream", "rtp://no-such-host.invalid:5004", "--quiet"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                         cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and lines[0].startswith("rtseg: error: --stream"), out.stderr
    bad = subprocess.run([sys.executable, "-m", "rtseg", "run", str(bundle), "--source", str(video), "--stream",
                          "udp://127.0.0.1:5004"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert bad.returncode != 0 and "rtp://HOST:PORT" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before anything was written
