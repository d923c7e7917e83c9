"""The WebRTC browser view (`--serve PORT --webrtc`, issue 23 item 4) in headless Chromium: a run's overlay is
decoded in the page (the page's own RTCPeerConnection.getStats: framesDecoded goes up, and the picture the <video>
shows changes), behind the token; ICE offers the loopback only; the page falls back to MJPEG when the
offer is refused; bad input is one line each."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import urllib.request

import pytest

from rtseg.access import resolve
from rtseg.cli import main
from rtseg.video import open_source, run_pipeline
from rtseg.video.server import BrowserView, ServeOptions

from .media import make_video, numbered_frame
from .test_browser_view import _SNAPSHOT, _wait

pytest.importorskip("aiortc", reason="aiortc is not installed (pip install -e '.[webrtc]')")
TOKEN = "webrtc-test-token"

_DECODED = """
const done = arguments[0];
if (!window.rtsegPc) return done(null);
window.rtsegPc.getStats().then((stats) => {
  let frames = null;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames = r.framesDecoded; });
  done(frames);
});
"""

_VIDEO_SNAPSHOT = """
const v = document.getElementById('webrtc');
if (!v.videoWidth) return null;
const c = document.createElement('canvas');
c.width = v.videoWidth; c.height = v.videoHeight;
c.getContext('2d').drawImage(v, 0, 0);
return c.toDataURL();
"""


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.page_load_strategy = "eager"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


def test_a_run_is_decoded_in_chromium_over_webrtc_behind_the_token(seg, browser, tmp_path):
    video = make_video(tmp_path / "camera.mp4", 240, (64, 96), fps=30)
    grant = resolve("127.0.0.1", 0, TOKEN)
    started: dict = {}
    ready = threading.Event()
    options = ServeOptions("0", grant=grant, webrtc=True, on_listen=lambda url: (started.update(url=url), ready.set()))
    runner = threading.Thread(target=lambda: started.update(summary=run_pipeline(
        seg, open_source(video, live=True), serve=options)))
    runner.start()
    try:
        assert ready.wait(30)
        browser.get(f"{started['url']}?token={TOKEN}")  # the offer goes with the cookie this sets
        assert _wait(lambda: browser.execute_script("return window.rtsegView") == "webrtc"), \
            browser.get_log("browser")
        first = _wait(lambda: browser.execute_async_script(_DECODED))
        assert _wait(lambda: browser.execute_async_script(_DECODED) > first + 10), "framesDecoded did not go up"
        first = _wait(lambda: browser.execute_script(_VIDEO_SNAPSHOT))  # what the <video> shows, drawn to a canvas
        assert _wait(lambda: (shot := browser.execute_script(_VIDEO_SNAPSHOT)) != first and shot), \
            "the <video> shows the same picture"
        assert browser.find_element("id", "stream").value_of_css_property("display") == "none"  # MJPEG stopped
        sdp = browser.execute_script("return window.rtsegPc.remoteDescription.sdp")
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in line for line in candidates), candidates  # loopback only
    finally:
        runner.join(30)
    assert started["summary"].frames > 0 and not runner.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith(("rtseg-", "asyncio_"))]


def test_the_page_falls_back_to_mjpeg_when_the_offer_is_refused(browser, monkeypatch):
    from rtseg.video import webrtc

    monkeypatch.setattr(webrtc, "MAX_PEERS", 0)  # every offer is one too many: 503
    view = BrowserView(ServeOptions("0", webrtc=True))
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.wait(1 / 30):
            view.publish(numbered_frame(i, 64, 96))
            i += 1

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        browser.get(view.url)
        assert _wait(lambda: browser.execute_script("return window.rtsegView") == "mjpeg")
        first = _wait(lambda: browser.execute_script(_SNAPSHOT))
        assert _wait(lambda: (shot := browser.execute_script(_SNAPSHOT)) != first and shot)
        request = urllib.request.Request(view.url + "offer", data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(request, timeout=5)
        assert exc.value.code == 400
        offer = json.dumps({"type": "offer", "sdp": "v=0\r\nnonsense\r\n"}).encode()
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(urllib.request.Request(view.url + "offer", data=offer, method="POST"), timeout=5)
        assert exc.value.code == 503
    finally:
        stop.set()
        feeder.join()
        view.close()


def test_a_bad_offer_is_400(monkeypatch):
    view = BrowserView(ServeOptions("0", webrtc=True))
    try:
        for body in (b"[1, 2]", json.dumps({"type": "offer", "sdp": "v=0\r\nnonsense\r\n"}).encode()):
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(urllib.request.Request(view.url + "offer", data=body, method="POST"),
                                       timeout=10)
            assert exc.value.code == 400, body
    finally:
        view.close()


def test_webrtc_without_aiortc_is_one_line(bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "aiortc", None)  # as if the extra were not installed
    code = main(["run", str(bundle), str(make_video(tmp_path / "c.mp4", 2)), "--serve", "0", "--webrtc", "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert code == 2 and len(lines) == 1 and "pip install 'rtseg[webrtc]'" in lines[0] and "Traceback" not in err
