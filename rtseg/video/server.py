"""The browser view (``--serve``): MJPEG over HTTP for headless machines.

The standard library's ThreadingHTTPServer and one Condition holding the newest JPEG are all it takes: every
viewer waits for a frame newer than the one it sent last and gets the newest, so a slow viewer skips frames and
never builds a queue. Binds 127.0.0.1 unless told otherwise.

  /             page: the overlay, the class legend, live stats, "source offline" while reconnecting
  /stream.mjpg  multipart/x-mixed-replace JPEG stream
  /frame.jpg    the newest frame (a snapshot)
  /stats.json   frames, fps (last 3 s) and fps_mean (whole run), drops, outages, latency, source state, classes
  /offer        (--webrtc) the page's WebRTC offer -> answer (rtseg.video.webrtc); the page falls back to MJPEG

Who may connect is rtseg.access's rule: on the loopback anyone (as before); beyond it every route asks for the
token (``Authorization: Bearer``, ``?token=`` or the per-port cookie). The page opened with ``?token=`` sets the
cookie and redirects to itself without the token, so the token leaves the address bar and the history, and the
page's own requests (MJPEG, stats, the offer) carry the cookie. The token is never in a log, stats or a summary.
"""

from __future__ import annotations

import dataclasses
import errno
import html
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import numpy as np

from ..access import UNAUTHORIZED, Access, Grant, resolve
from ..errors import RtsegError
from .decoders import import_cv2

_BOUNDARY = "rtsegframe"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>rtseg: {title}</title><link rel="icon" href="data:,">
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
<div id="view"><img id="stream" src="/stream.mjpg" alt="segmentation overlay">{video}
<div id="offline">source offline</div></div>
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
{script}</script></body></html>
"""
_VIDEO = '<video id="webrtc" autoplay muted playsinline style="display: none; max-width: 100%"></video>'
_PAGES = ("/", "/index.html")
_MAX_OFFER = 256 * 1024  # an SDP offer is a few KB


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


@dataclasses.dataclass
class ServeOptions:
    """What ``--serve`` was given, checked before any slow work (:func:`prepare`): the address, who may connect
    (``grant``; None: rtseg.access's rule with no token given), WebRTC on or off, and ``on_listen(url)``, called
    once the server listens with its URL (the caller adds the token to print it: the view never prints it)."""

    address: str | int = "8080"
    grant: Grant | None = None
    webrtc: bool = False
    on_listen: Callable[[str], None] | None = None


def prepare(address: str | int, token: str | None = None, no_auth: bool = False,
            webrtc: bool = False) -> ServeOptions:
    """``--serve [HOST:]PORT [--token T | --no-auth] [--webrtc]`` -> ServeOptions, or the one-line error now: a port
    in use, a bad token, aiortc missing (before the model loads or the demo renders)."""
    host, port = parse_address(address)
    grant = resolve(host, port, token, no_auth)
    if webrtc:
        from .webrtc import require_aiortc

        require_aiortc()
    check_listen(address)
    return ServeOptions(address, grant, webrtc)


class BrowserView:
    """The HTTP server and the newest JPEG; also a sink (``write(result)``) for the pipeline."""

    name = "serve"

    def __init__(self, address: str | int | ServeOptions, class_names=(), palette=None, title: str = "",
                 stats: Callable[[], dict] | None = None, jpeg_quality: int = 80):
        self.cv2 = import_cv2()
        options = address if isinstance(address, ServeOptions) else ServeOptions(address)
        host, port = parse_address(options.address)
        grant = options.grant or resolve(host, port)
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.closed = False
        self.last_image: np.ndarray | None = None
        self.state, self.state_message = "starting", ""
        self.stats = stats or (lambda: {"frames": self.seq, "fps": 0.0, "drops": 0})
        self.quality = jpeg_quality
        self.page = self._page(title, class_names, palette, options.webrtc).encode()
        self.class_names = [str(n) for n in class_names]
        self.webrtc = None
        if options.webrtc:
            from .webrtc import WebRtcView

            self.webrtc = WebRtcView(host)
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            if self.webrtc is not None:
                self.webrtc.close()
            raise _listen_error(exc, host, port) from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.access: Access = dataclasses.replace(grant.access, port=self.port)  # the cookie of the bound port
        self.url = f"http://{self.host}:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="rtseg-serve", daemon=True)
        self.thread.start()
        if options.on_listen is not None:
            options.on_listen(self.url)

    @staticmethod
    def _page(title: str, class_names, palette, webrtc: bool = False) -> str:
        legend = []
        for i, name in enumerate(class_names):
            r, g, b = (int(c) for c in palette[i]) if palette is not None and i < len(palette) else (128, 128, 128)
            legend.append(f'<span><i style="background: rgb({r},{g},{b})"></i>{html.escape(str(name))}</span>')
        script = ""
        if webrtc:
            from .webrtc import PAGE_SCRIPT

            script = PAGE_SCRIPT
        return _PAGE.format(title=html.escape(title), legend="".join(legend), video=_VIDEO if webrtc else "",
                            script=script)

    # -- what the pipeline calls ------------------------------------------------------------------------------
    def publish(self, image: np.ndarray) -> None:
        ok, buf = self.cv2.imencode(".jpg", image, [self.cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self.cond:
            self.jpeg = buf.tobytes()
            self.seq += 1
            self.cond.notify_all()
        if self.webrtc is not None:
            self.webrtc.push(image)

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
        if self.webrtc is not None:
            self.webrtc.close()
        return {"url": self.url}

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _handler(self):
        view = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the run has its own status line
                pass

            def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _allowed(self, path: str, query: str) -> bool:
                """True if the request may go on; otherwise it has been answered (401, or the page's redirect)."""
                access = view.access
                if not access.required:
                    return True
                token, where = access.presented(self.headers.get("Authorization"), self.headers.get("Cookie"),
                                                query)
                if not access.check(token):
                    self._send(401, (UNAUTHORIZED + "\n").encode(), "text/plain; charset=utf-8",
                               {"WWW-Authenticate": "Bearer"})
                    return False
                if where == "query" and path in _PAGES and self.command == "GET":
                    # the token moves into the cookie and out of the address bar (and the history)
                    rest = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"])
                    self._send(303, b"", "text/plain", {"Location": path + (f"?{rest}" if rest else ""),
                                                        "Set-Cookie": access.set_cookie(token)})
                    return False
                return True

            def do_POST(self):
                path, _, query = self.path.partition("?")
                if not self._allowed(path, query):
                    return
                if path != "/offer" or view.webrtc is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                from .webrtc import PeersFull

                try:
                    length = int(self.headers.get("Content-Length") or -1)
                except ValueError:
                    length = -1
                if not 0 < length <= _MAX_OFFER:
                    self.close_connection = True
                    self._send(413 if length > _MAX_OFFER else 411, b"an offer of at most 256 KB\n", "text/plain")
                    return
                try:
                    answer = view.webrtc.answer(json.loads(self.rfile.read(length)))
                except (ValueError, UnicodeDecodeError):
                    self._send(400, b"the body is not JSON\n", "text/plain")
                except RtsegError as exc:
                    self._send(503 if isinstance(exc, PeersFull) else 400, f"{exc}\n".encode(), "text/plain")
                except Exception as exc:  # noqa: BLE001 - aiortc's own failure: the page falls back to MJPEG
                    self._send(500, f"WebRTC failed: {type(exc).__name__}\n".encode(), "text/plain")
                else:
                    self._send(200, json.dumps(answer).encode(), "application/json")

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if not self._allowed(path, query):
                    return
                if path in _PAGES:
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
                # each part ends with the next boundary AND the next part's headers: Chromium shows a part only once
                # the next one's headers have ended, so with a Content-Length header per part (sent with the JPEG)
                # every frame showed one frame late (58 against 16 ms at 30 fps: benchmarks/view_latency.py)
                part = f"\r\n--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode()
                try:
                    self.wfile.write(part[2:])
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
                        self.wfile.write(jpeg + part)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError, OSError):
                        return

        return Handler
