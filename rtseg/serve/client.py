"""``RemoteSegmenter``: the runtime's Segmenter surface, with the segment stage sent to an ``rtseg serve`` service.

Anything written against :class:`rtseg.runtime.Segmenter` (the ``rtseg run`` pipeline, benchmarks, user code) takes
a RemoteSegmenter unchanged: ``segment`` posts the frame and returns a ``SegmentResult``; ``overlay``,
``colorize``, ``palette`` and ``class_names`` are local, from the service's ``/info``. Only the standard library
and NumPy are used (no Ray on the client). One connection per calling thread, so many streams may share one
RemoteSegmenter and their concurrent requests are batched by the service.

Segmenting a frame is idempotent, so a request that fails in transit or on a replica that died (connection
reset, 5xx) is sent again, up to ``retries`` times; each frame still gets exactly one answer, in the caller's
order. A 4xx is the caller's mistake and is raised at once, with the service's message; a 401 (a service bound
beyond the loopback asks for a token) as one line saying to pass ``--token`` or set ``RTSEG_TOKEN``. The token
(``token``, else ``$RTSEG_TOKEN``) goes in every request's ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from urllib.parse import urlencode, urlparse

import numpy as np

from ..access import TOKEN_ENV
from ..errors import RtsegError
from . import codec


class RemoteSegmenter:
    """An ``rtseg serve`` service as a segmenter (:class:`~rtseg.runtime.protocol.SegmenterProtocol`)."""

    thread_safe = True  # many streams may share one; the service batches their concurrent requests
    on_gpu = False  # as far as this process knows: frames are computed elsewhere, the overlay here
    cpu_threads = None

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 3, encoding: str = "raw",
                 backoff: float = 0.2, token: str | None = None):
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RtsegError(f"--remote {url!r}: expected http://HOST:PORT of an rtseg serve service")
        if encoding not in ("raw", "png", "jpeg"):
            raise RtsegError(f"encoding {encoding!r}: use raw, png or jpeg")
        self.url = url
        self._scheme, self._host = parsed.scheme, parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        self.timeout, self.retries, self.encoding, self.backoff = timeout, retries, encoding, backoff
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self.retried = 0  # requests sent again after a transport error or a 5xx
        self.batch_sizes: dict[int, int] = {}  # batch size the service ran a frame in -> frames
        self.replica_frames: dict[str, int] = {}  # replica id -> frames it answered
        self.node_frames: dict[str, int] = {}  # Ray node id -> frames its replicas answered
        self.timeout = min(timeout, 10.0)  # the first contact: an rtseg service answers /info at once
        try:
            status, body, _ = self._request("GET", "/info", retry=True)
        finally:
            self.timeout = timeout
            self.close()  # the next connection gets the full timeout
        if status != 200:
            raise RtsegError(f"{url} answered {status} to GET /info; is it an rtseg serve service?")
        self.info = json.loads(body)
        self.num_classes = int(self.info["num_classes"])
        self.class_names = list(self.info["class_names"])
        self.palette = np.asarray(self.info["palette"], np.uint8).reshape(-1, 3)  # RGB
        # a service older than these keys: every class, and trained (its bundle said nothing else)
        self.trained_classes = [int(i) for i in self.info.get("trained_classes", range(self.num_classes))]
        self.untrained = bool(self.info.get("untrained", False))
        self._palette_bgr = np.ascontiguousarray(self.palette[:, ::-1])

    # -- the Segmenter surface --------------------------------------------------------------------------------
    def describe(self) -> dict:
        d = self.info.get("describe", {})
        return {"backend": f"remote ({d.get('backend', '?')})", "device": d.get("device", "?"),
                "provider": d.get("provider"), "url": self.url, "why": f"--remote {self.url}"}

    def segment(self, frame: np.ndarray, return_score: bool = False, overlay: float | None = None):
        from ..runtime.segmenter import SegmentResult, check_frame

        if return_score:
            raise RtsegError("a remote service returns labels only; run locally for scores")
        frame = check_frame(frame)
        t0 = time.perf_counter()
        body, headers = codec.encode_frame(frame, self.encoding)
        t1 = time.perf_counter()
        status, answer, got = self._request("POST", "/segment?" + urlencode({"format": "raw"}), body, headers,
                                            retry=True)
        t2 = time.perf_counter()
        if status != 200:
            raise RtsegError(f"the service at {self.url} refused the frame ({status}):"
                             f" {answer.decode(errors='replace').strip()}")
        labels = codec.decode_labels(answer, got)
        batch, replica = int(got.get(codec.BATCH_SIZE, 1)), got.get(codec.REPLICA, "?")
        node = got.get(codec.NODE, "?")
        with self._lock:
            self.batch_sizes[batch] = self.batch_sizes.get(batch, 0) + 1
            self.replica_frames[replica] = self.replica_frames.get(replica, 0) + 1
            self.node_frames[node] = self.node_frames.get(node, 0) + 1
        shown = self.overlay(frame, labels, overlay) if overlay is not None else None
        t3 = time.perf_counter()
        return SegmentResult(labels, {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": t3 - t2},
                             overlay=shown)

    def segment_batch(self, frames: list[np.ndarray], return_score: bool = False) -> list:
        return [self.segment(f, return_score) for f in frames]

    def overlay(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, out: np.ndarray | None = None):
        from ..kernels import overlay

        return overlay(frame, labels, self._palette_bgr, alpha, out=out)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        from ..kernels import colorize

        return colorize(labels, self._palette_bgr)

    def replicas(self, count: int, threads: int) -> list:
        return []  # the service runs its own replicas

    def health(self) -> dict:
        """The service's /health answer ({"status": "ok", "replica": ..., "model": ...}) and its HTTP status."""
        status, body, _ = self._request("GET", "/health", retry=False)
        return {**(json.loads(body) if status == 200 else {"message": body.decode()}), "http_status": status}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> RemoteSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self.timeout)
        return conn

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 retry: bool = True) -> tuple[int, bytes, object]:
        attempts = 1 + (self.retries if retry else 0)
        last = ""
        for attempt in range(attempts):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(self.backoff * attempt)
            try:
                conn = self._connection()
                conn.request(method, self._prefix + path, body=body, headers={**(headers or {}), **self._auth})
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:  # a server that accepts and never answers: waiting again would only repeat it
                self.close()
                raise RtsegError(f"no answer from {self.url} to {method} {path} within {self.timeout:g} s (timed"
                                 f" out); check that it is an rtseg serve service and not stalled") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a fresh connection for the next attempt
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status == 401:
                said = "refused the token given" if self._auth else "asks for a token"
                raise RtsegError(f"{self.url} {said} (401); pass --token TOKEN or set {TOKEN_ENV} to the token"
                                 f" rtseg serve printed at its start")
            if resp.status >= 500:
                last = f"{resp.status} {data.decode(errors='replace').strip()[:200]}"
                continue
            return resp.status, data, resp.headers  # case-insensitive
        raise RtsegError(f"the service at {self.url} failed {attempts} times ({last}); check that it is running"
                         f" (rtseg serve) and reachable")
