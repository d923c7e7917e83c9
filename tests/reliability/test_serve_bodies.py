"""Case 8: rtseg serve bounds request bodies and the time they take, against a real service (real Ray, real
sockets): a Content-Length beyond what --max-frame allows is a 413 before a byte of the body is read; a client
that sends its headers and part of its body, then stalls, gets a 408 and frees its slot; a body that arrives
whole still gets its labels."""

from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")

from rtseg.serve.app import ServeOptions, start  # noqa: E402
from rtseg.serve.codec import BODY_TIMEOUT_S, max_body_bytes  # noqa: E402

MAX_FRAME = (240, 320)


@pytest.fixture(scope="module")
def service(fast_scnn_bundle):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    svc = start(ServeOptions(bundle=fast_scnn_bundle, replicas=1, cpus_per_replica=1, port=port, num_cpus=2,
                             max_frame=MAX_FRAME, ray_init={"object_store_memory": 200 * 1024 * 1024}))
    yield svc
    svc.stop()


def _send(url: str, head: bytes, body: bytes = b"", read_timeout: float = 60.0) -> tuple[int, bytes]:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as conn:
        conn.sendall(head + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"Content-Length" in data.split(b"\r\n\r\n")[0]:
                header, _, rest = data.partition(b"\r\n\r\n")
                length = int(header.split(b"content-length: ")[-1].split(b"\r\n")[0]) if b"content-length: " in \
                    header.lower() else None
                if length is not None and len(rest) >= length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _head(length: int) -> bytes:
    return (f"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def test_a_huge_content_length_is_413_at_once(service):
    status, body = _send(service.url, _head(10 * 2**30))  # 10 GB announced, nothing sent
    assert status == 413 and b"--max-frame" in body, body
    status, body = _send(service.url, _head(max_body_bytes(MAX_FRAME) + 1))
    assert status == 413


def test_a_stalled_body_is_408_and_the_service_answers_again(service):
    status, body = _send(service.url, _head(1_000_000), b"0123456789")  # 10 bytes of a million, then silence
    assert status == 408 and f"{BODY_TIMEOUT_S:g} s".encode() in body, body
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (64, 96, 3), np.uint8))[1].tobytes()
    status, body = _send(service.url, _head(len(png)), png)
    assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED).shape == (64, 96)


def test_health_answers_while_a_client_stalls(service):
    with socket.create_connection(tuple(service.url.split("//")[1].split(":")[0:1]) + (
            int(service.url.rsplit(":", 1)[1]),)) as stalled:
        stalled.sendall(_head(1_000_000) + b"0123456789")
        time.sleep(0.5)
        status, _ = _send(service.url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200
