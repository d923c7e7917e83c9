"""Several streams into one local Segmenter: frames batched across streams, each stream's masks exactly those of
running it alone, in its own order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")

from rtseg.runtime import load  # noqa: E402
from rtseg.video import run_pipeline  # noqa: E402
from rtseg.video.streams import SharedSegmenter, run_streams  # noqa: E402

from .media import make_video  # noqa: E402


def _masks(folder):
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}


def test_streams_share_one_segmenter(fast_scnn_bundle, tmp_path):
    sizes, counts = [(64, 96), (48, 128), (96, 64)], [40, 25, 40]
    videos = [make_video(tmp_path / f"s{k}.mp4", n, size=hw) for k, (hw, n) in enumerate(zip(sizes, counts))]
    with load(fast_scnn_bundle, threads=1) as seg:
        shared = SharedSegmenter(seg, max_batch=4, wait_ms=20)
        summaries = run_streams(shared, [str(v) for v in videos],
                                [{"save_masks": str(tmp_path / f"multi{k}")} for k in range(3)], live=False)
        shared.close()
        for k, video in enumerate(videos):
            run_pipeline(seg, str(video), save_masks=str(tmp_path / f"alone{k}"), live=False, handle_signals=False)
    assert [s.frames for s in summaries] == counts
    for k in range(3):
        multi, alone = _masks(tmp_path / f"multi{k}"), _masks(tmp_path / f"alone{k}")
        assert list(multi) == list(alone) and len(alone) == counts[k]
        assert all(np.array_equal(multi[name], alone[name]) for name in alone), k
    assert sum(shared.batch_sizes.values()) >= 1
    assert sum(n * size for size, n in shared.batch_sizes.items()) == sum(counts)
    assert any(size > 1 for size in shared.batch_sizes), shared.batch_sizes  # frames of streams met in a batch

    # the same through `rtseg run` with two --source values: DIR/0, DIR/1
    from rtseg.cli import main

    assert main(["run", str(fast_scnn_bundle), "--source", str(videos[1]), "--source", str(videos[0]),
                 "--save-masks", str(tmp_path / "cli"), "--quiet"]) == 0
    for k, alone in enumerate([_masks(tmp_path / "alone1"), _masks(tmp_path / "alone0")]):
        multi = _masks(tmp_path / "cli" / str(k))
        assert list(multi) == list(alone) and all(np.array_equal(multi[n], alone[n]) for n in alone)


def test_run_cli_needs_a_bundle_or_remote(fast_scnn_bundle, tmp_path, capsys):
    from rtseg.cli import main

    clip = make_video(tmp_path / "c.mp4", 3)
    for argv, message in [(["--source", str(clip)], "pass a BUNDLE"),
                          ([str(fast_scnn_bundle), "--source", str(clip), "--remote", "http://127.0.0.1:1"],
                           "not both"),
                          ([str(fast_scnn_bundle), "--source", str(clip), "--source", str(clip), "--serve", "0"],
                           "take one --source")]:
        assert main(["run", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtseg: error: ") and message in err and err.count("\n") == 1, err


def test_a_failing_frame_fails_only_its_stream(fast_scnn_bundle):
    with load(fast_scnn_bundle, threads=1) as seg, SharedSegmenter(seg, max_batch=4, wait_ms=50) as shared:
        good = np.zeros((32, 48, 3), np.uint8)
        results = shared.segment_batch([good, good])
        assert [r.labels.shape for r in results] == [(32, 48), (32, 48)]
        from rtseg.errors import RtsegError

        with pytest.raises(RtsegError, match="greyscale"):
            shared.segment(np.zeros((32, 48), np.uint8))
        assert shared.segment(good).labels.shape == (32, 48)
