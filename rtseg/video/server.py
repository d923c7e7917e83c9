"""The browser view (``--serve``): MJPEG over HTTP for headless machines.

The standard library's ThreadingHTTPServer and one Condition holding the newest JPEG are all it takes: every
viewer waits for a frame newer than the one it sent last and gets the newest, so a slow viewer skips frames and
never builds a queue. Binds 127.0.0.1 unless told otherwise.

  /             page: the overlay, the class legend, live stats, "source offline" while reconnecting
  /stream.mjpg  multipart/x-mixed-replace JPEG stream
  /frame.jpg    the newest frame (a snapshot)
  /stats.json   frames, fps (last 3 s) and fps_mean (whole run), drops, outages, latency, source state, classes
"""

from __future__ import annotations

import errno
import html
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from ..errors import RtsegError
from .decoders import import_cv2

_BOUNDARY = "rtsegframe"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>rtseg: {title}</title>
<style>
body {{ font: 14px sans-serif; margin: 1em; background: #111; color: #eee; }}
#view {{ position: relative; display: inline-block; }}
#view img {{ max-width: 100%; display: block; }}
#offline {{ display: none; position: absolute; inset: 0; background: rgba(0,0,0,.6); color: #f66;
           font-size: 2em; align-items: center; justify-content: center; }}
.legend span {{ display: inline-block; margin: 2px 8px 2px 0; }}
.legend i {{ display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin-right: 4px; }}
#stats {{ font-family: monospace; margin: .5em 0; }}
</style></head><body>
<h3>rtseg: {title}</h3>
<div id="view"><img id="stream" src="/stream.mjpg" alt="segmentation overlay"><div id="offline">source offline</div></div>
<div id="stats">waiting for frames...</div>
<div class="legend">{legend}</div>
<script>
async function poll() {{
  try {{
    const s = await (await fetch('/stats.json', {{cache: 'no-store'}})).json();
    document.getElementById('offline').style.display = s.state === 'reconnecting' ? 'flex' : 'none';
    const ms = (x) => (x === null || x === undefined) ? '-' : (x * 1000).toFixed(1);
    document.getElementById('stats').textContent =
      `${{s.state}} | frames ${{s.frames}} | ${{(s.fps || 0).toFixed(1)}} fps now, ` +
      `${{(s.fps_mean || 0).toFixed(1)}} mean | drops ${{s.drops}} | ` +
      (s.outages ? `outages ${{s.outages}} (${{s.reconnect_attempts}} attempts) | ` : '') +
      `latency p50 ${{ms(s.latency_p50)}} ms p99 ${{ms(s.latency_p99)}} ms`;
  }} catch (e) {{ document.getElementById('stats').textContent = 'server stopped'; }}
  setTimeout(poll, 500);
}}
poll();
</script></body></html>
"""


def parse_address(text: str | int) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    text = str(text).strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise RtsegError(f"--serve {text}: expected PORT or HOST:PORT (port 0-65535)")
    return host, int(port)


def _listen_error(exc: OSError, host: str, port: int) -> RtsegError:
    if exc.errno == errno.EADDRINUSE:
        return RtsegError(f"--serve: port {port} on {host} is already in use; pick another port (or 0 for a free"
                          f" one)")
    return RtsegError(f"--serve: cannot listen on {host}:{port} ({exc.strerror})")


def check_listen(address: str | int) -> None:
    """Raise the one-line error BrowserView would, now, before any slow work (the port is bound and let go)."""
    import socket

    host, port = parse_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds
            probe.bind(infos[0][4])
    except socket.gaierror as exc:
        raise RtsegError(f"--serve: cannot listen on {host}:{port} ({exc.strerror})") from None
    except OSError as exc:
        raise _listen_error(exc, host, port) from None


class BrowserView:
    """The HTTP server and the newest JPEG; also a sink (``write(result)``) for the pipeline."""

    name = "serve"

    def __init__(self, address: str | int, class_names=(), palette=None, title: str = "",
                 stats: Callable[[], dict] | None = None, jpeg_quality: int = 80):
        self.cv2 = import_cv2()
        host, port = parse_address(address)
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.closed = False
        self.last_image: np.ndarray | None = None
        self.state, self.state_message = "starting", ""
        self.stats = stats or (lambda: {"frames": self.seq, "fps": 0.0, "drops": 0})
        self.quality = jpeg_quality
        self.page = self._page(title, class_names, palette).encode()
        self.class_names = [str(n) for n in class_names]
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            raise _listen_error(exc, host, port) from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="rtseg-serve", daemon=True)
        self.thread.start()

    @staticmethod
    def _page(title: str, class_names, palette) -> str:
        legend = []
        for i, name in enumerate(class_names):
            r, g, b = (int(c) for c in palette[i]) if palette is not None and i < len(palette) else (128, 128, 128)
            legend.append(f'<span><i style="background: rgb({r},{g},{b})"></i>{html.escape(str(name))}</span>')
        return _PAGE.format(title=html.escape(title), legend="".join(legend))

    # -- what the pipeline calls ------------------------------------------------------------------------------
    def publish(self, image: np.ndarray) -> None:
        ok, buf = self.cv2.imencode(".jpg", image, [self.cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self.cond:
            self.jpeg = buf.tobytes()
            self.seq += 1
            self.cond.notify_all()

    def write(self, result) -> None:
        image = result.overlay if result.overlay is not None else result.frame
        self.last_image = image
        self.publish(image)

    def set_state(self, state: str, message: str = "") -> None:
        """Called on every source state change; while reconnecting viewers see the last frame dimmed (the page
        says "source offline" over it, once: the image carries no second copy of the words)."""
        self.state, self.state_message = state, message
        if state == "reconnecting" and self.last_image is not None:
            self.publish((self.last_image // 3).astype(np.uint8))

    def close(self) -> dict:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
        return {"url": self.url}

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _handler(self):
        view = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the run has its own status line
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, view.page, "text/html; charset=utf-8")
                elif path == "/stats.json":
                    body = {**view.stats(), "state": view.state, "state_message": view.state_message,
                            "classes": view.class_names}
                    self._send(200, json.dumps(body).encode(), "application/json")
                elif path == "/frame.jpg":
                    with view.cond:
                        jpeg = view.jpeg
                    if jpeg is None:
                        self._send(503, b"no frame yet\n", "text/plain")
                    else:
                        self._send(200, jpeg, "image/jpeg")
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _stream(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                # each part ends with the next boundary, so a browser shows a frame as soon as it arrives
                try:
                    self.wfile.write(f"--{_BOUNDARY}\r\n".encode())
                except OSError:
                    return
                sent = 0
                while True:
                    with view.cond:
                        view.cond.wait_for(lambda last=sent: view.seq != last or view.closed, timeout=1.0)
                        if view.closed:
                            return
                        if view.seq == sent:
                            continue
                        jpeg, sent = view.jpeg, view.seq
                    try:
                        self.wfile.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                                         + jpeg + f"\r\n--{_BOUNDARY}\r\n".encode())
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError, OSError):
                        return

        return Handler
