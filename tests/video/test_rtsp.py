"""RTSP against a real server (GStreamer's, started here on 127.0.0.1): frames arrive, and after the server is
stopped and started again the run resumes on its own, reports it, and feeds no frame from before the drop."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rtseg.video import iter_results, open_source

from .media import make_video, read_index

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")


def _gst_missing_reason() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, check=False)
    if probe.returncode:
        return ("GStreamer's RTSP server is not installed (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; .ci/run does)")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    def __init__(self, video: Path, port: int):
        self.video, self.port = video, port
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.video), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            pytest.fail(f"the RTSP server did not start: {line} {self.proc.stderr.read()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.proc = None


@pytest.fixture
def rtsp(tmp_path):
    if reason := _gst_missing_reason():
        pytest.skip(reason)
    server = RtspServer(make_video(tmp_path / "served.mp4", 600, (64, 96), fps=30), _free_port())
    server.start()
    yield server
    server.stop()


def test_rtsp_frames_arrive_and_the_run_resumes_after_a_server_restart(seg, rtsp):
    events: list[tuple[float, str, str]] = []
    source = open_source(f"rtsp://127.0.0.1:{rtsp.port}/test",
                         on_state=lambda state, message: events.append((time.monotonic(), state, message)))
    assert source.live
    watchdog = threading.Timer(60, source.close)  # never hang the suite if the server does not come back
    watchdog.start()
    before, after, restarted = [], [], False
    try:
        for r in iter_results(seg, source):
            assert r.frame.mean() > 10, "a black frame reached the model"
            if not restarted:
                before.append(r)
                if len(before) == 20:
                    rtsp.stop()
                    time.sleep(1.0)
                    rtsp.start()
                    restarted = True
            else:
                after.append(r)
                if len([a for a in after if a.captured > events[-1][0]]) >= 20:
                    break
    finally:
        watchdog.cancel()
        source.close()
    states = [state for _, state, _ in events]
    assert "reconnecting" in states, events
    dropped_at = next(t for t, state, _ in events if state == "reconnecting")
    back_at, _, message = next(e for e in events if e[1] == "running" and e[0] > dropped_at)
    assert "reconnected" in message and source.reconnects >= 1
    # nothing captured while the server was away was fed to the model, and the new session's frames came through
    assert not [r for r in before + after if dropped_at < r.captured < back_at]
    resumed = [r for r in after if r.captured > back_at]
    assert len(resumed) >= 20
    assert read_index(resumed[0].frame) < read_index(before[-1].frame)  # the new server started its file over
    assert states[-1] == "ended"
