"""Who may watch the browser view (issue 20 item 23): with a token, every route asks for it over real HTTP; the page
opened with ?token= moves it into a cookie and out of the address bar and keeps showing frames in Chromium; the CLI
prints the URL with the token once, and nowhere else. Also `demo --serve` on a busy port fails before any slow work."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from rtseg.access import UNAUTHORIZED, resolve
from rtseg.cli import main
from rtseg.video.server import BrowserView, ServeOptions

from .media import make_video, numbered_frame, read_index
from .test_browser_view import _SNAPSHOT, _wait, browser  # noqa: F401 - the module's Chromium

TOKEN = "s3cret-token-for-tests"
ROUTES = ("/", "/index.html", "/stream.mjpg", "/frame.jpg", "/stats.json")


@pytest.fixture
def view():
    v = BrowserView(ServeOptions("0", grant=resolve("127.0.0.1", 0, TOKEN)), ["road", "car"],
                    np.array([[128, 64, 128], [0, 0, 142]], np.uint8), title="cam")
    v.publish(numbered_frame(7, 64, 96))
    yield v
    v.close()


def _request(view, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(view.host, view.port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read() if path.split("?")[0] != "/stream.mjpg" or response.status != 200 else response.read(200)
    conn.close()
    return response, data


def test_every_route_asks_for_the_token(view):
    for path in ROUTES:
        for headers, query in (({}, ""), ({"Authorization": "Bearer wrong-token-1"}, ""), ({}, "?token=wrong-token-1"),
                               ({"Cookie": f"rtseg_token_{view.port}=wrong-token-1"}, ""),
                               ({"Cookie": f"rtseg_token_{view.port + 1}={TOKEN}"}, "")):  # another port's cookie
            response, body = _request(view, "GET", path + query, headers)
            assert response.status == 401, (path, headers, query)
            assert body.decode().strip() == UNAUTHORIZED and response.headers["WWW-Authenticate"] == "Bearer"
    response, body = _request(view, "POST", "/offer", {"Content-Type": "application/json"}, b"{}")
    assert response.status == 401 and body.decode().strip() == UNAUTHORIZED
    with pytest.raises(urllib.error.HTTPError) as exc:  # the same through urllib, a script's client
        urllib.request.urlopen(view.url + "stats.json", timeout=5)
    assert exc.value.code == 401


def test_bearer_query_and_cookie_open_every_route(view):
    for headers, query in (({"Authorization": f"Bearer {TOKEN}"}, ""), ({}, f"?token={TOKEN}"),
                           ({"Cookie": f"other=1; rtseg_token_{view.port}={TOKEN}"}, "")):
        for path in ROUTES[2:]:
            response, body = _request(view, "GET", path + query, headers)
            assert response.status == 200, (path, headers, query)
            if path == "/frame.jpg":
                import cv2

                assert read_index(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)) == 7
            if path == "/stream.mjpg":
                assert b"\xff\xd8" in body
            if path == "/stats.json":
                assert TOKEN not in body.decode() and json.loads(body)["classes"] == ["road", "car"]
    request = urllib.request.Request(view.url + "stats.json", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["frames"] == 1
    response, body = _request(view, "GET", "/", {"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200 and b"segmentation overlay" in body
    response, _ = _request(view, "POST", "/offer", {"Authorization": f"Bearer {TOKEN}"}, b"{}")
    assert response.status == 404  # allowed in, but this view has no WebRTC


def test_the_page_moves_the_token_into_a_cookie_and_out_of_the_url(view):
    response, _ = _request(view, "GET", f"/?view=both&token={TOKEN}")
    assert response.status == 303 and response.headers["Location"] == "/?view=both"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"rtseg_token_{view.port}={TOKEN};") and "HttpOnly" in cookie and "Path=/" in cookie
    response, _ = _request(view, "GET", f"/index.html?token={TOKEN}")
    assert response.status == 303 and response.headers["Location"] == "/index.html"


def test_loopback_without_a_token_is_open_as_before():
    v = BrowserView("0")
    try:
        with urllib.request.urlopen(v.url + "stats.json", timeout=5) as response:
            assert response.status == 200
    finally:
        v.close()
    assert not resolve("127.0.0.1", 8080).access.required and resolve("0.0.0.0", 8080).access.required


def test_chromium_opened_with_the_token_keeps_showing_frames(view, browser):  # noqa: F811
    import threading

    stop = threading.Event()

    def feed():
        i = 8
        while not stop.wait(1 / 30):
            view.publish(numbered_frame(i, 64, 96))
            i += 1

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        browser.get(f"{view.url}?token={TOKEN}")
        assert _wait(lambda: browser.current_url == view.url), browser.current_url  # the token left the URL
        first = _wait(lambda: browser.execute_script(_SNAPSHOT))  # the MJPEG image decodes (naturalWidth > 0)
        assert _wait(lambda: (shot := browser.execute_script(_SNAPSHOT)) != first and shot), "the image never changed"
        assert _wait(lambda: "fps" in browser.find_element("id", "stats").text)  # /stats.json polled with the cookie
        assert TOKEN not in browser.page_source
        assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    finally:
        stop.set()
        feeder.join()


def test_run_prints_the_url_with_the_token_once_and_nowhere_else(bundle, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", 8)
    stats = tmp_path / "stats.jsonl"
    code = main(["run", str(bundle), str(video), "--serve", "127.0.0.1:0", "--token", TOKEN, "--stats", str(stats),
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in (out + err).splitlines() if TOKEN in line]
    assert len(lines) == 1 and lines[0].startswith("rtseg: browser view at http://127.0.0.1:"), out + err
    assert lines[0].endswith(f"/?token={TOKEN}"), lines
    assert "requests need a token" in err, err
    assert TOKEN not in stats.read_text()


@pytest.mark.parametrize("argv, expected", [
    (["--webrtc"], "--webrtc applies to the browser view"),
    (["--token", TOKEN], "--token applies to the browser view"),
    (["--serve", "0", "--no-auth", "--token", TOKEN], "contradict"),
    (["--serve", "0", "--token", "short"], "at least 8"),
])
def test_bad_serve_flags_are_one_line(bundle, tmp_path, capsys, argv, expected):
    code = main(["run", str(bundle), str(tmp_path / "none.mp4"), *argv, "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err


def test_demo_serve_on_a_busy_port_fails_before_rendering(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["demo", "--out", str(tmp_path / "demo"), "--serve", str(busy.getsockname()[1])])
    out, err = capsys.readouterr()
    assert code == 2 and "already in use" in err and "Traceback" not in err, err
    assert not (tmp_path / "demo").exists() and out == "", out  # nothing rendered, exported or said
