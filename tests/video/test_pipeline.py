"""File sources through the whole pipeline: no frame lost, order kept, masks equal to Segmenter.segment."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import av
import cv2
import numpy as np

from rtseg.video import iter_results, open_source, run_pipeline

from .media import read_index


def _decoded(path):
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def _rtseg_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("rtseg-")]


def test_file_loses_no_frame_and_keeps_order(seg, video300, tmp_path):
    masks, out, stats = tmp_path / "masks", tmp_path / "out.mp4", tmp_path / "stats.jsonl"
    summary = run_pipeline(seg, str(video300), save=out, save_masks=masks, stats=stats)
    assert (summary.frames, summary.drops, summary.sink_drops) == (300, 0, 0)
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in range(300)]
    for i, image in enumerate(_decoded(video300)):
        assert read_index(image) == i % 4096
        mask = cv2.imread(str(masks / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask, seg.segment(image).labels, err_msg=f"frame {i}")
    # the mp4 holds 300 H.264 frames that decode
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert sum(1 for _ in _decoded(out)) == 300
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                                "stream=codec_name,nb_read_frames,pix_fmt", "-of", "json", str(out)],
                               capture_output=True, text=True, check=True)
        stream = json.loads(probe.stdout)["streams"][0]
        assert (stream["codec_name"], stream["nb_read_frames"], stream["pix_fmt"]) == ("h264", "300", "yuv420p")
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["index"] for r in lines[:-1]] == list(range(300))
    assert lines[-1]["summary"]["frames"] == 300
    assert {"decode", "preprocess", "infer", "postprocess", "overlay"} <= set(lines[0]["timings"])
    assert not list(tmp_path.glob(".*partial*"))
    assert not _rtseg_threads()


def test_iter_results_yields_every_frame_in_order_and_cleans_up(seg, video300):
    results = iter_results(seg, str(video300), max_frames=40, overlay=True)
    seen = []
    for r in results:
        assert r.latency > 0 and r.timings["infer"] > 0 and r.overlay.shape == r.frame.shape
        assert read_index(r.frame) == r.index
        seen.append(r.index)
    assert seen == list(range(40))
    # leaving a loop early stops the reader and segment threads
    for r in iter_results(seg, str(video300)):
        if r.index == 5:
            break
    assert not _rtseg_threads()


def test_file_on_two_threads_runs_two_frames_side_by_side_in_order(bundle, video300, tmp_path):
    from rtseg.runtime import load

    with load(bundle, backend="onnxruntime", device="cpu", threads=2) as seg2:
        masks = tmp_path / "masks"
        summary = run_pipeline(seg2, str(video300), save_masks=masks, max_frames=60)
        assert summary.segmenting == "2 frames side by side, 1 thread each"
        assert summary.frames == 60
        for i, image in zip(range(60), _decoded(video300)):
            mask = cv2.imread(str(masks / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(mask, seg2.segment(image).labels, err_msg=f"frame {i}")
        live = run_pipeline(seg2, open_source(video300, live=True), max_frames=5)
        assert live.segmenting == "one frame at a time"  # a live source: every thread on the newest frame
        from rtseg.video.streams import SharedSegmenter

        shared = SharedSegmenter(seg2)  # several streams' frames meet in its batches: no private copies
        try:
            assert run_pipeline(shared, str(video300), max_frames=5).segmenting == "one frame at a time"
        finally:
            shared.close()
    with load(bundle, backend="onnxruntime", device="cpu", threads=1) as seg1:
        assert run_pipeline(seg1, str(video300), max_frames=5).segmenting == "one frame at a time"
    assert not _rtseg_threads()


def test_vid_stride_and_image_folder(seg, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    frames = [np.random.default_rng(i).integers(0, 255, (48, 80, 3), np.uint8) for i in range(6)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{i}.png"), f)
    masks = tmp_path / "masks"
    summary = run_pipeline(seg, open_source(folder, vid_stride=2), save_masks=masks, colour_masks=True)
    assert summary.frames == 3
    assert sorted(p.name for p in masks.glob("*.png")) == ["000000.png", "000002.png", "000004.png"]
    labels = seg.segment(frames[4]).labels
    np.testing.assert_array_equal(cv2.imread(str(masks / "000004.png"), cv2.IMREAD_UNCHANGED), labels)
    np.testing.assert_array_equal(cv2.imread(str(masks / "colour" / "000004.png")), seg.colorize(labels))


def test_odd_sized_frames_are_saved_padded_to_even(seg, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((33, 97, 3), 60 * i, np.uint8))
    summary = run_pipeline(seg, folder, save=tmp_path / "odd.mp4", alpha=0.0)
    with av.open(str(tmp_path / "odd.mp4")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert summary.outputs["save"]["frames"] == 3 and [f.shape for f in frames] == [(34, 98, 3)] * 3
    assert all(abs(float(np.median(f)) - 60 * i) <= 3 for i, f in enumerate(frames))  # in order, colours kept
