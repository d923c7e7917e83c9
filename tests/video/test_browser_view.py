"""The browser view in a real browser (Debian's Chromium, headless, driven by Selenium): the page loads, the image
updates, /stats.json counts up, "source offline" shows while reconnecting; the server answers only on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.video import open_source, run_pipeline
from rtseg.video.server import BrowserView, parse_address

from .media import make_video


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.page_load_strategy = "eager"  # an MJPEG <img> never finishes loading; the DOM is what the tests need
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


_SNAPSHOT = """
const img = document.getElementById('stream');
if (!img.naturalWidth) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
c.getContext('2d').drawImage(img, 0, 0);
return c.toDataURL();
"""


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats.json", timeout=5) as response:
        return json.load(response)


def test_page_updates_in_chromium_while_the_run_goes(seg, browser, tmp_path):
    video = make_video(tmp_path / "camera.mp4", 150, (120, 160), fps=30)
    started: dict = {}
    ready = threading.Event()
    runner = threading.Thread(target=lambda: started.update(summary=run_pipeline(
        seg, open_source(video, live=True), serve="0", on_start=lambda out: (started.update(out), ready.set()))))
    runner.start()
    try:
        assert ready.wait(30)
        url = started["serve"]
        assert url.startswith("http://127.0.0.1:")
        browser.get(url)
        first = _wait(lambda: browser.execute_script(_SNAPSHOT))
        assert _wait(lambda: (shot := browser.execute_script(_SNAPSHOT)) != first and shot), "the image never changed"
        frames = _stats(url)["frames"]
        assert _wait(lambda: _stats(url)["frames"] > frames)
        assert _wait(lambda: "fps" in browser.find_element("id", "stats").text)
        legend = browser.find_element("css selector", ".legend").text
        assert all(name in legend for name in seg.class_names[:3])
        with urllib.request.urlopen(url + "frame.jpg", timeout=5) as response:
            assert response.headers["Content-Type"] == "image/jpeg" and response.read(2) == b"\xff\xd8"
    finally:
        runner.join(30)
    assert started["summary"].frames > 0


def test_source_offline_is_shown_while_reconnecting(browser):
    view = BrowserView("0", ["road", "car"], np.array([[128, 64, 128], [0, 0, 142]], np.uint8))
    try:
        view.publish(np.full((60, 80, 3), 200, np.uint8))
        view.set_state("running")
        browser.get(view.url)
        offline = lambda: browser.find_element("id", "offline").value_of_css_property("display")
        assert _wait(lambda: offline() == "none")
        view.last_image = np.full((60, 80, 3), 200, np.uint8)
        view.set_state("reconnecting", "stream ended; retry 1 in 0.5 s")
        assert _wait(lambda: offline() == "flex")
        assert _stats(view.url)["state"] == "reconnecting"
    finally:
        view.close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_binds_loopback_only_by_default_and_busy_port_is_an_error():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    view = BrowserView("0")
    try:
        assert view.host == "127.0.0.1"
        assert _stats(view.url)["state"] == "starting"
        other = _non_loopback_address()
        if other is None:
            pytest.skip("this machine has no non-loopback address to try")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, view.port), timeout=5).close()
        with pytest.raises(RtsegError, match="already in use"):
            BrowserView(view.port)
    finally:
        view.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("rtseg-")]


def test_a_slow_viewer_skips_to_the_newest_frame_and_builds_no_queue():
    import cv2

    from .media import numbered_frame, read_index

    view = BrowserView("0")
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # big JPEGs fill the socket fast
    try:
        slow = socket.create_connection((view.host, view.port), timeout=10)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        slow.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        for i in range(200):  # the viewer reads nothing meanwhile
            frame = noise.copy()
            frame[:8] = numbered_frame(i, 8, 640)[:8]
            view.publish(frame)
            time.sleep(0.002)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                slow.settimeout(1.0)
                chunk = slow.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        slow.close()
    finally:
        view.close()
    parts = [p for p in data.split(b"--rtsegframe") if b"\xff\xd8" in p]
    jpegs = [p[p.index(b"\xff\xd8"):p.rindex(b"\xff\xd9") + 2] for p in parts]
    last = cv2.imdecode(np.frombuffer(jpegs[-1], np.uint8), cv2.IMREAD_COLOR)
    assert read_index(last) == 199  # the newest frame arrived
    assert len(jpegs) < 150, len(jpegs)  # the frames it had no room for were skipped, not queued
