"""``rtseg serve`` refuses, in one line and before starting Ray, what cannot work: a port in use, an unreachable
cluster address, bad numbers. ``rtseg run --remote``'s client refuses a service that is not there."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")

from rtseg.cli import main  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402
from rtseg.serve.client import RemoteSegmenter  # noqa: E402


def _one_line_error(capsys, argv, message):
    import ray

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtseg: error: ") and message in err and err.count("\n") == 1, err
    assert not ray.is_initialized()  # failed before any cluster was started (how fast: benchmarks/serve.py)
    return err


def test_port_in_use(fast_scnn_bundle, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--port", str(port)],
                        f"cannot listen on 127.0.0.1:{port}")


def test_unreachable_address(fast_scnn_bundle, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--port", "0", "--address", f"127.0.0.1:{port}"],
                          "--port 0")
    assert "1-65535" in err
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--address", f"127.0.0.1:{port}"],
                    f"cannot reach the Ray cluster at 127.0.0.1:{port}")
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--address", "nohostport"], "expected HOST:PORT")


def test_bad_numbers_and_bundle(fast_scnn_bundle, tmp_path, capsys):
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--replicas", "0"], "--replicas 0")
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--max-batch", "0"], "--max-batch 0")
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--max-frame", "big"], "--max-frame 'big'")
    _one_line_error(capsys, ["serve", str(tmp_path)], "no bundle manifest")


def test_remote_not_there():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RtsegError, match=f"the service at http://127.0.0.1:{port} failed 2 times"):
        RemoteSegmenter(f"http://127.0.0.1:{port}", retries=1, backoff=0)
    with pytest.raises(RtsegError, match="expected http://HOST:PORT"):
        RemoteSegmenter("ftp://example")


def test_token_flags_refused_before_ray(fast_scnn_bundle, capsys):
    """--token/--no-auth (rtseg.access.resolve) are checked before any cluster starts."""
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--host", "0.0.0.0", "--no-auth", "--token",
                             "a-fine-token-123"], "contradict")
    _one_line_error(capsys, ["serve", str(fast_scnn_bundle), "--token", "short"], "at least 8 printable")
