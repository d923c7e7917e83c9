"""Case 10: SIGTERM (what docker and systemd send) and Ctrl-C stop rtseg serve cleanly: the replicas drained, exit
128 + the signal (143, 130), no native stack dump or traceback, the port free again. Real Ray, a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from ..conftest import REPO

pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_service_cleanly(fast_scnn_bundle, tmp_path, sig, code):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rtseg", "serve", str(fast_scnn_bundle), "--port", str(port),
                                 "--replicas", "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 180
            while "rtseg: serving" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "rtseg: serving" in log.read_text(), log.read_text()
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert proc.returncode == code, (proc.returncode, text[-2000:])
    assert "Traceback" not in text and "SIGTERM received" not in text and "stopping" in text, text[-2000:]
    with socket.socket() as s:  # the HTTP proxy is gone
        s.bind(("127.0.0.1", port))
