"""``rtseg demo`` through its Python API on a short video: a playable H.264 overlay with every frame, a score."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
av = pytest.importorskip("av")

from rtseg.cli import main
from rtseg.demo.run import DemoOptions, run_demo
from rtseg.demo.video import VideoSpec

FRAMES = 8
pytestmark = pytest.mark.slow  # one export of the shipped model at 288x512 (about 20 s on 2 idle cores)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    opts = DemoOptions(out=out, video=VideoSpec(frames=FRAMES, height=360, width=640), bench_frames=3, workers=1,
                       progress=False)
    lines: list[str] = []
    return out, opts, run_demo(opts, say=lines.append), lines


def _decoded_frames(path) -> tuple[int, str, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
        return len(frames), stream.codec_context.name, (frames[0].height, frames[0].width)


def test_demo_writes_a_playable_h264_overlay_with_every_frame(demo):
    out, _, result, _ = demo
    assert _decoded_frames(out / "street" / "street.mp4") == (FRAMES, "h264", (360, 640))
    assert _decoded_frames(result["overlay"]) == (FRAMES, "h264", (360, 640))
    assert result["frames"] == FRAMES and len(list((out / "masks").glob("*.png"))) == FRAMES
    saved = json.loads((out / "demo.json").read_text())
    assert saved["pipeline"]["fps"] > 0 and saved["bench"]["model only"]["n"] == 3


def test_demo_bundle_passes_the_export_gates_on_demo_frames(demo):
    out = demo[0]
    manifest = json.loads((out / "bundle" / "rtseg.json").read_text())
    verification = manifest["verification"]
    assert verification["passed"] and verification["frames"]["source"].endswith("street.mp4")
    assert verification["onnx"]["agreement"] >= 0.9999 and verification["onnx_fp16"]["agreement"] >= 0.995
    assert manifest["model"]["class_names"][13] == "car"


def test_demo_segments_the_street(demo):
    accuracy = demo[2]["accuracy"]
    assert accuracy["frames"] == FRAMES
    assert accuracy["mean_iou"] > 0.6, accuracy["class_iou"]
    assert {"road", "building", "car"} <= set(accuracy["class_iou"])
    assert not np.isnan(accuracy["pixel_accuracy"])


def test_second_run_reuses_video_and_bundle(demo):
    _, opts, _, _ = demo
    lines: list[str] = []
    run_demo(DemoOptions(**{**opts.__dict__, "bench_frames": 0}), say=lines.append)
    assert any("video" in line and "reused" in line for line in lines)
    assert any("bundle" in line and "reused" in line for line in lines)


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    assert main(["demo", "--frames", "0", "--out", str(tmp_path / "d")]) == 2
    assert main(["demo", "--video-size", "big", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("rtseg: error: --max-frames") and err[1].startswith("rtseg: error: --video-size")
    assert not (tmp_path / "d").exists()
