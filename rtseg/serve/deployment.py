"""The Ray Serve deployment: each replica holds one :class:`~rtseg.runtime.Segmenter`; requests are batched.

Requests from every client (HTTP or a Python handle) reach a replica's :meth:`SegmentService.segment_frames`
through ``@serve.batch``: the frames that arrive within ``batch_wait_ms`` of each other (up to ``max_batch``) go to
``Segmenter.segment_batch`` in one call, run on a worker thread so the replica keeps accepting the next batch.
Each answer carries the replica that ran it, the Ray node it runs on and the size of its batch, so clients can
count the batching and the spread over nodes.

The bundle comes from Ray, not from a path: ``bundle`` names the detached actor on the head node that holds the
:class:`~rtseg.serve.package.Package` the serve command verified (``{"holder": name}``); the replica fetches those
bytes through Ray's object store onto its own node, writes them into a folder of its own and re-checks every sha256
before loading (:func:`rtseg.serve.package.fetch`). A plain path still works (one machine).

HTTP routes (under the application's route prefix):
    GET  /health    200 {"status": "ok", ...} while the replica's segmenter is loaded
    GET  /info      classes, palette, model and backend (what a remote client needs for overlays)
    POST /segment   a frame in (see :mod:`rtseg.serve.codec`), labels or an overlay out

Who may ask (:mod:`rtseg.access`): ``access`` holds only the token's sha256 (init arguments show in Ray's dashboard
and state API, so the token itself never reaches Ray). When it requires a token, every route answers 401 to a
request without it, checked on the headers before a byte of the body is read; ``/health`` alone answers anyone
(load balancers probe it without credentials), with ``{"status": "ok"}`` and nothing more. The Python handle is
inside the cluster and is not asked.
"""

from __future__ import annotations

import asyncio
import collections

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rtseg.access import UNAUTHORIZED, Access

from . import codec


@serve.deployment(name="rtseg", health_check_period_s=5, health_check_timeout_s=30)
class SegmentService:
    def __init__(self, bundle, backend: str = "auto", device: str | None = None, threads: int | None = None,
                 max_batch: int = 8, batch_wait_ms: float = 5.0, max_frame=codec.DEFAULT_MAX_FRAME,
                 access: Access | None = None):
        import ray

        from rtseg.runtime import load

        self.bundle_sha256, self.folder = None, None
        if isinstance(bundle, dict):  # {"holder": name}: the bytes the serve command verified, from Ray
            from rtseg.serve.package import fetch

            self.folder, self.bundle_sha256 = fetch(bundle["holder"])
            bundle = str(self.folder)
        self.seg = load(bundle, backend=backend, device=device, threads=threads)
        self.node = ray.get_runtime_context().get_node_id()
        self.segment_frames.set_max_batch_size(max_batch)
        self.segment_frames.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)
        self.max_frame = tuple(max_frame)
        self.access = access or Access()
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.batch_sizes: collections.Counter = collections.Counter()
        self.info_doc = {"model": self.seg.manifest["model"].get("name"), "num_classes": self.seg.num_classes,
                         "class_names": self.seg.class_names, "palette": self.seg.palette.tolist(),
                         "trained_classes": self.seg.trained_classes, "untrained": self.seg.untrained,
                         "describe": {k: str(v) for k, v in self.seg.describe().items()},
                         "bundle_sha256": self.bundle_sha256, "node": self.node}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def segment_frames(self, frames: list[np.ndarray]) -> list[tuple]:
        """One ``segment_batch`` call for the whole batch; a frame that fails alone gets its own error back."""
        n = len(frames)
        self.batch_sizes[n] += 1
        try:
            results = await asyncio.to_thread(self.seg.segment_batch, frames)
            return [(r.labels, n, None) for r in results]
        except Exception:  # noqa: BLE001 - find which frame failed; the others still get their labels
            out = []
            for frame in frames:
                try:
                    out.append((self.seg.segment(frame).labels, n, None))
                except Exception as exc:  # noqa: BLE001 - reported to that request's client
                    out.append((None, n, f"{type(exc).__name__}: {exc}"))
            return out

    # -- the Python handle ----------------------------------------------------------------------------------
    async def segment(self, frame: np.ndarray) -> np.ndarray:
        """Labels (H, W) for one BGR uint8 frame; ``handle.segment.remote(frame).result()``."""
        labels, _, error = await self.segment_frames(frame)
        if error:
            raise RuntimeError(error)
        return labels

    def info(self) -> dict:
        return {**self.info_doc, "replica": self.replica}

    def access_policy(self) -> Access:
        """The service's access policy (the token's digest only), which ``rtseg serve --update`` keeps."""
        return self.access

    def stats(self) -> dict:
        """This replica's batch-size histogram: {size: batches}."""
        return {"replica": self.replica, "node": self.node, "batch_sizes": dict(self.batch_sizes)}

    def __del__(self):
        import shutil

        if getattr(self, "folder", None) is not None:  # this replica's copy of the bundle
            shutil.rmtree(self.folder, ignore_errors=True)

    def check_health(self) -> None:
        """Called by Serve's controller; a replica whose segmenter is gone is replaced."""
        if self.seg is None:
            raise RuntimeError("the segmenter is closed")

    # -- HTTP -----------------------------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        route = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        headers = {codec.REPLICA: self.replica, codec.NODE: self.node}
        if self.access.required and not self.access.allows(request.headers.get("authorization"),
                                                            request.headers.get("cookie"), request.url.query):
            if request.method == "GET" and route == "health":  # open to load balancers; names nothing
                return JSONResponse({"status": "ok"})
            return Response(UNAUTHORIZED + "\n", status_code=401, media_type="text/plain",
                            headers={"WWW-Authenticate": "Bearer"})
        if request.method == "GET" and route == "health":
            return JSONResponse({"status": "ok", "replica": self.replica, "model": self.info_doc["model"]},
                                headers=headers)
        if request.method == "GET" and route == "info":
            return JSONResponse(self.info(), headers=headers)
        if route != "segment":
            return _error(404, f"no route {request.url.path!r}: use GET /health, GET /info or POST /segment")
        if request.method != "POST":
            return _error(405, "POST the frame to /segment")
        try:
            out, fmt, alpha = codec.parse_query(request.query_params)
            frame = codec.decode_frame(await codec.read_body(request, self.max_frame),
                                       request.headers.get(codec.FRAME_SHAPE),
                                       self.max_frame)
        except codec.BadRequest as exc:
            return _error(exc.status, str(exc))
        labels, batch, error = await self.segment_frames(frame)
        if error:
            return _error(500, f"segmentation failed on replica {self.replica}: {error}")
        headers[codec.BATCH_SIZE] = str(batch)
        if out == "overlay":
            body, extra = codec.encode_image(self.seg.overlay(frame, labels, alpha), fmt)
        else:
            body, extra = codec.encode_labels(labels, fmt)
        return Response(body, headers={**headers, **extra}, media_type=extra.get("Content-Type"))


def _error(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")
