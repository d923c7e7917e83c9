"""Glass-to-glass latency of the browser view: MJPEG against WebRTC, both on one page in one run.

A producer publishes frames into rtseg's own BrowserView (``--serve --webrtc``) at a fixed rate; each frame carries
its number as a row of black/white blocks (16 bits) and its publish time (wall clock) is recorded. Headless
Chromium opens the page with ``?view=both`` (the MJPEG <img> and the WebRTC <video> side by side, each at its
natural size) plus a canvas that the page redraws on every animation frame with the page's own clock
(``Date.now()``, 24 bits of milliseconds, as blocks). Each screenshot therefore shows, in one composited frame, the
time it was drawn and the frame number each view was showing then: latency = that time - the frame's publish time,
for both views from the same picture, with no uncertainty from how long the screenshot takes (same machine, same
clock; one display frame, ~17 ms, of resolution).

What it covers is the view's own share: JPEG encode + multipart HTTP + the browser's MJPEG decode, against VP8/H.264
encode (aiortc) + RTP over UDP on the loopback + the browser's jitter buffer and decode, up to the composited page.
The model and the overlay before the sink are the same for both views and measured by pipeline.py.

    python3 benchmarks/view_latency.py [--size 360x640] [--fps 30] [--samples 60]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Span, machine_stamp, save_results  # noqa: E402

BITS, BLOCK, MARGIN = 16, 16, 8  # the frame number: 16 blocks of 16 px, 8 px from the top-left corner
CLOCK_BITS, CLOCK_BLOCK = 24, 12

_LAYOUT = """
const img = document.getElementById('stream'), video = document.getElementById('webrtc');
document.getElementById('offline').remove();
for (const el of [img, video]) { el.style.display = 'inline-block'; el.style.maxWidth = 'none';
                                 el.style.verticalAlign = 'top'; el.style.marginRight = '8px'; }
img.style.width = video.style.width = arguments[0] + 'px';
img.style.height = video.style.height = arguments[1] + 'px';
const c = document.createElement('canvas');
c.id = 'clock'; c.width = arguments[2] * arguments[3]; c.height = arguments[3];
document.body.insertBefore(c, document.body.firstChild);
const g = c.getContext('2d');
const bits = arguments[2], size = arguments[3];
(function tick() {
  const t = Date.now() % (2 ** bits);
  for (let b = 0; b < bits; b++) { g.fillStyle = (Math.floor(t / 2 ** b) % 2) ? '#fff' : '#000';
                                   g.fillRect(b * size, 0, size, size); }
  requestAnimationFrame(tick);
})();
"""

_RECTS = """
const r = (id) => { const b = document.getElementById(id).getBoundingClientRect(); return [b.left, b.top]; };
return {img: r('stream'), video: r('webrtc'), clock: r('clock'), dpr: window.devicePixelRatio,
        view: window.rtsegView};
"""

_STATS = """
const done = arguments[0];
window.rtsegPc.getStats().then((stats) => {
  const out = {};
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') Object.assign(out, {framesDecoded: r.framesDecoded,
      framesDropped: r.framesDropped, jitterBufferDelay: r.jitterBufferDelay,
      jitterBufferEmittedCount: r.jitterBufferEmittedCount, jitterBufferTargetDelay: r.jitterBufferTargetDelay,
      jitterBufferMinimumDelay: r.jitterBufferMinimumDelay, totalDecodeTime: r.totalDecodeTime,
      framesReceived: r.framesReceived, codecId: r.codecId, bytesReceived: r.bytesReceived});
  });
  stats.forEach((r) => { if (r.type === 'codec' && r.id === out.codecId) out.codec = r.mimeType; });
  const receiver = window.rtsegPc.getReceivers()[0];
  out.playoutDelayHint = receiver.playoutDelayHint;
  out.jitterBufferTarget = receiver.jitterBufferTarget;
  done(out);
});
"""


def backgrounds(count: int, h: int, w: int) -> list[np.ndarray]:
    """Street-like scenes (rtseg.scenes), BGR: what a view sends is a photograph-like picture, not a flat one."""
    from rtseg.scenes import synthetic_scenes

    return [np.ascontiguousarray(s[..., ::-1]) for s in synthetic_scenes(count, h, w)]


def stamp(image: np.ndarray, k: int) -> np.ndarray:
    out = image.copy()
    for b in range(BITS):
        x = MARGIN + b * BLOCK
        out[MARGIN:MARGIN + BLOCK, x:x + BLOCK] = 255 if (k >> b) & 1 else 0
    return out


def read_blocks(shot: np.ndarray, x0: float, y0: float, bits: int, size: int, margin: int = 0) -> int | None:
    value = 0
    for b in range(bits):
        cx, cy = int(round(x0 + margin + b * size + size / 2)), int(round(y0 + margin + size / 2))
        patch = shot[cy - size // 4:cy + size // 4 + 1, cx - size // 4:cx + size // 4 + 1]
        if patch.size == 0:
            return None
        level = float(patch.mean())
        if 70 < level < 185:  # neither black nor white: a frame caught mid-change
            return None
        value |= (level >= 128) << b
    return value


def unwrap(value: int, bits: int, near: int) -> int:
    """The number congruent to ``value`` modulo 2**bits nearest to ``near``."""
    period = 1 << bits
    return near + ((value - near + period // 2) % period) - period // 2


def browser(width: int, height: int):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    options.page_load_strategy = "eager"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(10)
    return driver


def measure(h: int, w: int, fps: float, samples: int, interval: float) -> dict:
    import cv2

    from rtseg.video.server import BrowserView, ServeOptions

    scenes = backgrounds(8, h, w)
    view = BrowserView(ServeOptions("127.0.0.1:0", webrtc=True), title="view latency")
    published: dict[int, float] = {}
    jpeg_bytes: list[int] = []
    stop = threading.Event()

    def produce():
        k, start = 0, time.perf_counter()
        while not stop.is_set():
            frame = stamp(scenes[(k // 15) % len(scenes)], k % (1 << BITS))
            published[k] = time.time()  # the frame exists now: glass-to-glass starts here
            view.publish(frame)
            jpeg_bytes.append(len(view.jpeg or b""))
            k += 1
            time.sleep(max(0.0, start + k / fps - time.perf_counter()))

    producer = threading.Thread(target=produce, name="producer", daemon=True)
    producer.start()
    driver = browser(2 * w + 80, h + 260)
    rows, failures = [], 0
    try:
        driver.get(view.url + "?view=both")
        deadline = time.monotonic() + 20
        while driver.execute_script("return window.rtsegView") != "webrtc":
            if time.monotonic() > deadline:
                raise SystemExit("WebRTC never played in Chromium")
            time.sleep(0.2)
        playing = time.monotonic()
        driver.execute_script(_LAYOUT, w, h, CLOCK_BITS, CLOCK_BLOCK)
        time.sleep(3.0)  # past the start: the jitter buffer settles
        rects = driver.execute_script(_RECTS)
        # only the rows holding the codes: a small screenshot takes Chromium little CPU (a whole 720p page took 0.8 s
        # of it per shot, which the WebRTC view's jitter buffer felt)
        bottom = max(rects["img"][1], rects["video"][1], rects["clock"][1] + CLOCK_BLOCK) + MARGIN + BLOCK + 4
        clip = {"x": 0, "y": 0, "width": 2 * w + 80, "height": int(bottom), "scale": 1}
        with Span() as span:
            while len(rows) < samples and failures < 4 * samples:
                time.sleep(interval)
                t0 = time.time()
                png = base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})["data"])
                t1 = time.time()
                shot = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
                clock = read_blocks(shot, *rects["clock"], CLOCK_BITS, CLOCK_BLOCK)
                shown = {name: read_blocks(shot, *rects[key], BITS, BLOCK, MARGIN)
                         for name, key in (("mjpeg", "img"), ("webrtc", "video"))}
                if clock is None or None in shown.values():
                    failures += 1
                    continue
                drawn = unwrap(clock, CLOCK_BITS, int(t0 * 1000)) / 1000  # the page's clock when it drew this
                newest = next(reversed(published))
                row = {"drawn": drawn, "screenshot_start": t0, "screenshot_s": t1 - t0}
                for name, k16 in shown.items():
                    k = unwrap(k16, BITS, newest)
                    if k not in published:
                        break
                    row[f"{name}_frame"] = k
                    row[f"{name}_ms"] = 1000 * (drawn - published[k])
                else:
                    rows.append(row)
                    continue
                failures += 1
        stats = driver.execute_async_script(_STATS)
        webrtc_mbps = stats.get("bytesReceived", 0) * 8 / 1e6 / (time.monotonic() - playing)
        browser_version = driver.capabilities.get("browserVersion")
    finally:
        stop.set()
        producer.join(5)
        driver.quit()
        view.close()

    def summary(key: str) -> dict:
        values = sorted(r[key] for r in rows)
        return {"median_ms": statistics.median(values), "p10_ms": values[len(values) // 10],
                "p90_ms": values[(9 * len(values)) // 10], "min_ms": values[0], "max_ms": values[-1]}

    result = {"size": f"{h}x{w}", "fps": fps, "samples": len(rows), "unreadable_screenshots": failures,
              "mjpeg": summary("mjpeg_ms"), "webrtc": summary("webrtc_ms"),
              "webrtc_minus_mjpeg_ms_median": statistics.median(r["webrtc_ms"] - r["mjpeg_ms"] for r in rows),
              "mjpeg_mbps_at_fps": statistics.mean(jpeg_bytes) * fps * 8 / 1e6, "webrtc_mbps": webrtc_mbps,
              "screenshot_s_median": statistics.median(r["screenshot_s"] for r in rows),
              "others_cpu_share": span.others_cpu_share, "chromium": browser_version, "webrtc_stats": stats,
              "rows": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", action="append", default=None, metavar="HxW",
                        help="frame size (repeat for several; default: 360x640 and 720x1280)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--samples", type=int, default=60, help="screenshots per size (default: 60)")
    parser.add_argument("--interval", type=float, default=0.15, help="seconds between screenshots")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import aiortc

    from rtseg.sizes import read_size

    results = {"machine": machine_stamp(aiortc=aiortc.__version__), "runs": []}
    for text in args.size or ["360x640", "720x1280"]:
        h, w = read_size(text, "--size")
        run = measure(h, w, args.fps, args.samples, args.interval)
        results["runs"].append(run)
        print(f"{run['size']} @ {args.fps:g} fps, {run['samples']} screenshots ({run['webrtc_stats'].get('codec')}):"
              f" MJPEG median {run['mjpeg']['median_ms']:.0f} ms (p90 {run['mjpeg']['p90_ms']:.0f}),"
              f" WebRTC median {run['webrtc']['median_ms']:.0f} ms (p90 {run['webrtc']['p90_ms']:.0f});"
              f" MJPEG {run['mjpeg_mbps_at_fps']:.1f} Mbit/s, WebRTC {run['webrtc_mbps']:.1f} Mbit/s;"
              f" others' CPU share {run['others_cpu_share']:.2f}", flush=True)
    save_results("view-latency", results, out=args.out)


if __name__ == "__main__":
    main()
