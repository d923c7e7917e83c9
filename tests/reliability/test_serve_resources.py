"""Case 9: rtseg serve checks the cluster's resources before it waits for them: replicas that cannot be placed
(a GPU on a machine with none, more CPUs than the cluster has) are one line and exit 2, with real Ray."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'rtseg[serve]')")

from rtseg.cli import main  # noqa: E402

from ..conftest import gpu_missing_reason  # noqa: E402


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("flags, words", [
    (["--gpus-per-replica", "1"], "--gpus-per-replica 0"),
    (["--replicas", str(2 * (os.cpu_count() or 1) + 1)], "lower --replicas"),
    (["--replicas", "2", "--cpus-per-replica", str(os.cpu_count() or 1)], "lower --replicas or --cpus-per-replica"),
])
def test_replicas_that_cannot_be_placed_are_one_line(fast_scnn_bundle, capsys, flags, words):
    if flags[0] == "--gpus-per-replica" and gpu_missing_reason() is None:
        pytest.skip("this machine has a GPU: one replica on it can be placed")
    import ray

    code = main(["serve", str(fast_scnn_bundle), "--port", _free_port(), *flags])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert code == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err, err
    assert not ray.is_initialized()  # the cluster it started is gone
