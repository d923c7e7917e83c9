"""Case 2: a live source that reconnects keeps counting frame indices (each connection's decoder counts from 0
again), so masks and stats of a later connection never overwrite an earlier one's."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import pytest

from rtseg.cli import main
from rtseg.video import open_source

from ..video.media import make_faststart_video

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


@pytest.fixture
def http_clip(tmp_path):
    """A real HTTP server whose stream is an 8-frame clip: each connection ends after 8 frames and the source
    reconnects (a camera that keeps dropping)."""
    make_faststart_video(tmp_path / "clip.mp4", 8, (64, 96))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    server.shutdown()
    server.server_close()


def test_indices_keep_counting_across_reconnects(http_clip):
    source = open_source(http_clip, live=True)
    indices = []
    deadline = time.monotonic() + 60
    try:
        while source.reconnects < 3 and time.monotonic() < deadline:
            try:
                frame = source.read(timeout=1.0)
            except TimeoutError:
                continue
            if frame is None:
                break
            indices.append(frame.index)
    finally:
        source.close()
    assert source.reconnects >= 3, indices
    assert indices == sorted(set(indices)), indices  # never an index twice, never going back
    assert indices[-1] >= 8 * 2  # frames of the third connection are numbered after the first two's


def test_masks_of_a_reconnecting_source_are_never_overwritten(fast_scnn_bundle, http_clip, tmp_path, capsys):
    masks, stats = tmp_path / "masks", tmp_path / "stats.jsonl"
    assert main(["run", str(fast_scnn_bundle), http_clip, "--live", "--quiet", "--max-frames", "20",
                 "--save-masks", str(masks), "--stats", str(stats)]) == 0
    import json

    records = [json.loads(line) for line in stats.read_text().splitlines()[:-1]]
    indices = [r["index"] for r in records]
    assert len(indices) == 20 and indices == sorted(set(indices)), indices
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in indices]  # one mask per frame
