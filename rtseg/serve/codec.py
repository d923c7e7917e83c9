"""The wire format of ``rtseg serve``, shared by the service and its client (no Ray here).

Request body: an encoded image (PNG, JPEG, BMP, ... as OpenCV reads them) or raw BGR uint8 pixels with the header
``X-Frame-Shape: H,W,3``. Query: ``out=labels`` (default) or ``overlay``; ``format=png`` (default) or ``raw`` for
labels, ``jpeg`` (default) or ``png`` for an overlay; ``alpha`` for the overlay.
Response: labels as a single-channel PNG (16-bit above 255 classes) or raw bytes with ``X-Labels-Shape`` and
``X-Labels-Dtype``; an overlay as an image. Every answer says which replica ran it and in what batch size
(``X-Replica``, ``X-Batch-Size``). A bad request is a 4xx whose body is one line saying what to send instead.
"""

from __future__ import annotations

import numpy as np

from ..errors import RtsegError

FRAME_SHAPE = "X-Frame-Shape"
LABELS_SHAPE, LABELS_DTYPE = "X-Labels-Shape", "X-Labels-Dtype"
REPLICA, BATCH_SIZE = "X-Replica", "X-Batch-Size"
NODE = "X-Ray-Node"  # the Ray node id of the replica that answered
DEFAULT_MAX_FRAME = (4320, 7680)  # 8K UHD


class BadRequest(RtsegError):
    """A request the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_frame(body: bytes, shape_header: str | None, max_frame: tuple[int, int] = DEFAULT_MAX_FRAME
                 ) -> np.ndarray:
    """A BGR uint8 (H, W, 3) frame from a request body."""
    if not body:
        raise BadRequest("the request has no body; send an encoded image (PNG/JPEG) or raw BGR uint8 pixels with"
                         f" the header {FRAME_SHAPE}: H,W,3")
    if shape_header:
        try:
            shape = tuple(int(v) for v in shape_header.replace("x", ",").split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise BadRequest(f"{FRAME_SHAPE} {shape_header!r}: expected H,W,3 (BGR uint8 pixels)")
        _check_size(shape[:2], max_frame)
        if len(body) != shape[0] * shape[1] * 3:
            raise BadRequest(f"the body has {len(body)} bytes but {FRAME_SHAPE} {shape_header} needs"
                             f" {shape[0] * shape[1] * 3}; send exactly H*W*3 BGR uint8 bytes")
        return np.frombuffer(body, np.uint8).reshape(shape)
    hw = header_size(body)
    if hw is not None:  # the size the header states is checked before a single pixel is decoded
        _check_size(hw, max_frame)
    import cv2

    frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise BadRequest(f"the body ({len(body)} bytes) is not an image OpenCV can decode; send PNG/JPEG bytes or"
                         f" raw BGR uint8 pixels with the header {FRAME_SHAPE}: H,W,3")
    _check_size(frame.shape[:2], max_frame)
    return frame


BODY_TIMEOUT_S = 10.0  # a request body that has not arrived whole by then is answered 408, its slot freed


def max_body_bytes(max_frame: tuple[int, int]) -> int:
    """The most bytes a frame of at most ``max_frame`` can take: raw BGR pixels, plus 1 MiB for an encoding's
    overhead (an encoded image of noise can be slightly larger than its pixels)."""
    return max_frame[0] * max_frame[1] * 3 + (1 << 20)


async def read_body(request, max_frame: tuple[int, int] = DEFAULT_MAX_FRAME, timeout: float = BODY_TIMEOUT_S
                    ) -> bytes:
    """A request's body (a Starlette request), bounded: a Content-Length above :func:`max_body_bytes` is a 413
    before a byte is read, a body that grows past it a 413 at that byte, and one that has not arrived whole within
    ``timeout`` seconds (a stalled client) a 408."""
    import asyncio

    limit = max_body_bytes(max_frame)
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise BadRequest(f"Content-Length {length!r} is not a number of bytes")
        if int(length) > limit:
            raise BadRequest(f"the body is {int(length)} bytes, more than the {limit} a frame within this service's"
                             f" --max-frame {max_frame[0]}x{max_frame[1]} can take; send a smaller frame", 413)

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the body passed {limit} bytes, more than a frame within this service's"
                                 f" --max-frame {max_frame[0]}x{max_frame[1]} can take; send a smaller frame", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    from starlette.requests import ClientDisconnect

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise BadRequest(f"the request body did not arrive whole within {timeout:g} s; send it at once", 408) from None
    except ClientDisconnect:  # nobody to answer; the slot is freed without a traceback in the replica's log
        raise BadRequest("the client hung up before its body arrived whole", 400) from None


def header_size(body: bytes) -> tuple[int, int] | None:
    """(H, W) as an encoded image's header states it, read by Pillow without decoding the pixels; None where
    Pillow is missing or does not know the format (OpenCV then decodes it and its size is checked after)."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own guard: far beyond any --max-frame
        raise BadRequest(f"the image's header states more than {2 * Image.MAX_IMAGE_PIXELS} pixels, larger than"
                         f" this service's --max-frame; downscale it", status=413) from None
    except Exception:  # noqa: BLE001 - any header Pillow cannot read is left to OpenCV to judge
        return None
    return int(height), int(width)


def _check_size(hw: tuple[int, int], max_frame: tuple[int, int]) -> None:
    if hw[0] > max_frame[0] or hw[1] > max_frame[1]:
        raise BadRequest(f"the frame is {hw[0]}x{hw[1]}, larger than this service's --max-frame"
                         f" {max_frame[0]}x{max_frame[1]}; downscale it or restart the service with a larger"
                         f" --max-frame", status=413)


def encode_frame(frame: np.ndarray, encoding: str = "raw") -> tuple[bytes, dict]:
    """Request body and headers for a BGR uint8 frame: raw pixels (exact, no codec cost) or PNG/JPEG."""
    if encoding == "raw":
        frame = np.ascontiguousarray(frame)
        return frame.tobytes(), {FRAME_SHAPE: ",".join(str(d) for d in frame.shape)}
    import cv2

    ok, buf = cv2.imencode(".png" if encoding == "png" else ".jpg", frame)
    if not ok:
        raise RtsegError(f"OpenCV could not encode the frame as {encoding}")
    return buf.tobytes(), {"Content-Type": f"image/{encoding}"}


def encode_labels(labels: np.ndarray, fmt: str) -> tuple[bytes, dict]:
    if fmt == "raw":
        labels = np.ascontiguousarray(labels)
        return labels.tobytes(), {"Content-Type": "application/octet-stream",
                                  LABELS_SHAPE: ",".join(str(d) for d in labels.shape),
                                  LABELS_DTYPE: labels.dtype.name}
    import cv2

    if labels.dtype != np.uint8:  # more than 255 classes: 16-bit PNG
        labels = labels.astype(np.uint16)
    ok, buf = cv2.imencode(".png", labels)
    return buf.tobytes(), {"Content-Type": "image/png"}


def decode_labels(body: bytes, headers) -> np.ndarray:
    """Labels from a response: raw bytes with their shape and dtype headers, or a single-channel PNG."""
    shape = headers.get(LABELS_SHAPE)
    if shape:
        dims = tuple(int(v) for v in shape.split(","))
        return np.frombuffer(body, np.dtype(headers.get(LABELS_DTYPE, "uint8"))).reshape(dims)
    import cv2

    labels = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        raise RtsegError("the service answered with something that is not a label image")
    return labels if labels.dtype == np.uint8 else labels.astype(np.int32)


def encode_image(image: np.ndarray, fmt: str) -> tuple[bytes, dict]:
    import cv2

    ext = ".png" if fmt == "png" else ".jpg"
    ok, buf = cv2.imencode(ext, image)
    return buf.tobytes(), {"Content-Type": "image/png" if fmt == "png" else "image/jpeg"}


def parse_query(query) -> tuple[str, str, float]:
    """``out``, ``format`` and ``alpha`` from the query parameters, checked."""
    out = query.get("out", "labels")
    if out not in ("labels", "overlay"):
        raise BadRequest(f"out={out!r}: use out=labels or out=overlay")
    fmt = query.get("format", "png" if out == "labels" else "jpeg")
    allowed = ("png", "raw") if out == "labels" else ("jpeg", "png")
    if fmt not in allowed:
        raise BadRequest(f"format={fmt!r}: with out={out} use format={' or format='.join(allowed)}")
    try:
        alpha = float(query.get("alpha", 0.5))
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise BadRequest(f"alpha={query.get('alpha')!r}: use a number from 0 to 1")
    return out, fmt, alpha
