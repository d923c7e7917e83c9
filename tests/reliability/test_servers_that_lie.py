"""Case 17: a stream server that accepts and then hangs, hangs up, or speaks something other than video: the
line says what happened (silence for N s, a hang-up, not a video stream, nobody there), against real sockets."""

from __future__ import annotations

import socket
import threading

import pytest

from rtseg.errors import RtsegError
from rtseg.video.sources import open_source

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


def _serve(mode: str):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if mode == "hang":
                    stop.wait(30)
                elif mode == "http-garbage":
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\n" + b"\x13\x37garbage" * 500)
                elif mode == "text":
                    conn.recv(4096)
                    conn.sendall(b"hello there\r\n" * 50)
                # "hang-up": closed at once

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server, stop


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = {  # mode, scheme -> words of the line
    ("hang", "http"): "sent no video for",
    ("hang", "rtsp"): "sent no video for",
    ("http-garbage", "http"): "not with a video stream",
    ("text", "rtsp"): "not with a video stream",
    ("hang-up", "http"): "closed the connection",
    ("refused", "http"): "cannot connect",
    ("refused", "rtsp"): "cannot connect",
}


@pytest.mark.parametrize("mode, scheme", list(CASES))
def test_a_server_that_lies_gets_a_line_saying_what_happened(mode, scheme):
    if mode == "refused":
        server, stop, port = None, None, _refused_port()
    else:
        server, stop = _serve(mode)
        port = server.getsockname()[1]
    try:
        with pytest.raises(RtsegError) as info:
            open_source(f"{scheme}://127.0.0.1:{port}/cam", open_timeout=1.5, read_timeout=1.5)
    finally:
        if server is not None:
            stop.set()
            server.close()
    message = str(info.value)
    assert CASES[(mode, scheme)] in message and "\n" not in message, message


def test_run_remote_to_a_service_that_never_answers(tmp_path, capsys):
    """Case 11: --remote to a server that accepts and never answers: one line naming the timeout, not 122 s of
    silence (a timed-out request is not sent again)."""
    from rtseg.cli import main

    from ..video.media import make_video

    video = make_video(tmp_path / "v.mp4", 3, (64, 96))
    server, stop = _serve("hang")
    try:
        code = main(["run", "--remote", f"http://127.0.0.1:{server.getsockname()[1]}", str(video), "--no-save",
                     "--quiet"])
    finally:
        stop.set()
        server.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert code == 2 and len(lines) == 1 and "no answer from" in lines[0] and "timed out" in lines[0], err
