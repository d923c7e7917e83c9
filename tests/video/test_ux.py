"""A new user's path through ``rtseg run`` (issue #21): positional source, the default save folder, the bundle in a
folder, the pictures (--visualize, legend, known classes, --ignore-class), the warnings and the live figures."""

from __future__ import annotations

import json
import shutil
import threading
import time

import av
import numpy as np
import pytest

from rtseg.cli import main
from rtseg.video import open_source, run_pipeline
from rtseg.video.legend import Picture, display_palette
from rtseg.video.progress import Progress
from rtseg.video.stats import RunStats

from .media import make_video
from .test_browser_view import _stats, _wait, browser  # noqa: F401 - the Chromium fixture
from .test_rtsp import RtspServer, _free_port, _gst_missing_reason


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A 240x320 clip: big enough for a legend."""
    return make_video(tmp_path_factory.mktemp("street") / "street.mp4", 6, (240, 320))


def test_positional_source_saves_under_runs_run_n_and_says_where(bundle, street, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for n in (1, 2):
        assert main(["run", str(bundle), str(street), "--max-frames", "3"]) == 0
        err = capsys.readouterr().err
        saved = tmp_path / "runs" / "run" / str(n) / "street.mp4"
        assert f"runs/run/{n}/street.mp4" in err and "--no-save" in err, err
        assert len(_frames(saved)) == 3
    assert main(["run", str(bundle), str(street), "--max-frames", "2", "--no-save", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "run").iterdir()) == ["1", "2"]
    # a source that fails leaves no empty runs/run/N behind
    assert main(["run", str(bundle), str(tmp_path / "missing.mp4"), "--quiet"]) == 2
    assert sorted(p.name for p in (tmp_path / "runs" / "run").iterdir()) == ["1", "2"]


def test_a_folder_holding_the_bundle_is_used_with_a_note(bundle, street, tmp_path, capsys):
    demo = tmp_path / "demo"
    shutil.copytree(bundle, demo / "bundle")
    (demo / "street").mkdir()
    assert main(["run", str(demo), str(street), "--max-frames", "2", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert f"using the bundle inside it, {demo / 'bundle'}" in err
    assert "untrained" not in err
    assert len(_frames(tmp_path / "o" / "street.mp4")) == 2


def test_an_untrained_bundle_says_so_at_load(bundle, street, tmp_path, capsys):
    untrained = tmp_path / "untrained"
    shutil.copytree(bundle, untrained)
    doc = json.loads((untrained / "rtseg.json").read_text())
    doc["model"]["source"].update(weights=None, weights_sha256=None)  # what rtseg export writes without --weights
    (untrained / "rtseg.json").write_text(json.dumps(doc))
    assert main(["run", str(untrained), str(street), "--max-frames", "1", "--no-save", "--quiet"]) == 0
    assert "exported without --weights: its model is untrained" in capsys.readouterr().err


def test_errors_point_to_the_subcommand_help_and_color_is_accepted(bundle, street, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(bundle), str(street), "--colr-masks"])
    assert exit_.value.code == 2
    assert "(see 'rtseg run --help')" in capsys.readouterr().err
    assert main(["run", str(bundle), str(street), "--quiet", "--max-frames", "1", "--save-masks",
                 str(tmp_path / "m"), "--color-masks"]) == 0
    assert (tmp_path / "m" / "colour" / "000000.png").is_file()
    assert main(["run", str(bundle)]) == 2
    assert "pass a SOURCE after the bundle" in capsys.readouterr().err


def test_visualize_side_is_original_beside_overlay_and_the_legend_is_drawn(bundle, street, tmp_path):
    saved = {}
    for mode, legend in (("overlay", "--no-legend"), ("side", "--no-legend"), ("overlay", "--legend"),
                         ("mask", "--no-legend")):
        out = tmp_path / f"{mode}{legend}.mp4"
        assert main(["run", str(bundle), str(street), "--quiet", "--max-frames", "2", "--visualize", mode, legend,
                     "--save", str(out)]) == 0
        saved[mode, legend] = _frames(out)[0].astype(np.int16)
    original = _frames(street)[0].astype(np.int16)
    side, overlay = saved["side", "--no-legend"], saved["overlay", "--no-legend"]
    assert side.shape == (240, 640, 3)
    assert np.abs(side[:, :320] - original).mean() < 6        # left: the frame as it was (H.264 noise only)
    assert np.abs(side[:, 320:] - overlay).mean() < 6         # right: the overlay
    assert np.abs(overlay - original).mean() > 10             # and the overlay is not the frame
    # the legend: a dark box with white names in the bottom-left corner, nothing elsewhere
    with_legend = saved["overlay", "--legend"]
    corner = (slice(200, 240), slice(0, 60))
    assert np.abs(with_legend[corner] - overlay[corner]).mean() > 20
    assert (with_legend[corner].min(axis=2) > 150).sum() > 20   # white text pixels
    assert np.abs(with_legend[:100, 200:] - overlay[:100, 200:]).mean() < 6
    mask = saved["mask", "--no-legend"]
    assert np.abs(mask - original).mean() > 10


def test_the_legend_lists_the_trained_classes_and_ignore_class_leaves_one_undrawn(bundle, seg, tmp_path):
    from rtseg.demo.run import record_trained_classes

    trained = tmp_path / "trained"
    shutil.copytree(bundle, trained)
    record_trained_classes(trained)
    from rtseg.runtime import load

    with load(trained, backend="onnxruntime", device="cpu") as s:
        names = [s.class_names[i] for i in s.trained_classes]
        assert names == ["road", "sidewalk", "building", "vegetation", "sky", "person", "car"]
        picture = Picture.for_segmenter(s, ignore=["road"], legend=False)
    assert picture.legend_entries[0] == names[1:]
    frame = np.full((120, 160, 3), 128, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[:, 80:] = 2  # building
    shown = picture(frame, labels)
    assert (shown[:, :80] == frame[:, :80]).all()            # road: undrawn
    assert np.abs(shown[:, 80:].astype(int) - 128).max() > 40  # building: coloured on a grey facade
    with pytest.raises(Exception, match="no such class"):
        Picture.for_segmenter(seg, ignore=["lamppost"])


def test_every_shown_class_stays_coloured_on_grey():
    """Blended at the default alpha over mid grey, no class of the Cityscapes palette stays near grey."""
    import colorsys

    from rtseg.bundle.classes import CITYSCAPES

    pal = display_palette([c for _, c in CITYSCAPES]).astype(float)
    blended = 0.6 * pal + 0.4 * 128
    saturation = [colorsys.rgb_to_hsv(*(c / 255))[1] for c in blended]
    assert min(saturation) > 0.3, dict(zip([n for n, _ in CITYSCAPES], saturation))
    assert len({tuple(c) for c in pal.astype(int)}) == len(CITYSCAPES)


def test_progress_is_sized_to_max_frames_and_plain_off_a_terminal(tmp_path):
    import io

    stream = io.StringIO()
    bar = Progress(795, live=False, enabled=True, stream=stream, max_frames=30)
    assert bar.total == 30 and bar.bar is None  # no tqdm bar into a pipe

    class Source:
        state, drops = "running", 0

    stats = RunStats()
    bar.last -= 10
    bar.tick(stats, Source())
    assert stream.getvalue().endswith("\n") and "\r" not in stream.getvalue() and "0/30 frames" in stream.getvalue()


def test_file_runs_show_work_and_queue_wait_not_staleness(seg, street):
    summary = run_pipeline(seg, str(street))
    text = "\n".join(summary.lines())
    assert "per frame" in text and "queue wait" in text and "staleness" not in text
    assert summary.work["n"] == summary.frames == 6


@pytest.fixture
def rtsp(tmp_path):
    if reason := _gst_missing_reason():
        pytest.skip(reason)
    server = RtspServer(make_video(tmp_path / "served.mp4", 900, (120, 160), fps=30), _free_port())
    server.start()
    yield server
    server.stop()


def test_sliding_fps_and_one_outage_in_chromium_after_a_drop(seg, rtsp, browser):  # noqa: F811
    started: dict = {}
    ready = threading.Event()
    source = open_source(f"rtsp://127.0.0.1:{rtsp.port}/test")
    runner = threading.Thread(target=lambda: started.update(summary=run_pipeline(
        seg, source, serve="0", max_frames=400, handle_signals=False,
        on_start=lambda out: (started.update(out), ready.set()))))
    runner.start()
    try:
        assert ready.wait(30)
        url = started["serve"]
        browser.get(url)
        _wait(lambda: _stats(url)["frames"] >= 20, 30)
        rtsp.stop()
        _wait(lambda: _stats(url)["state"] == "reconnecting", 30)
        time.sleep(2.5)
        rtsp.start()
        _wait(lambda: _stats(url)["state"] == "running", 30)
        time.sleep(3.5)  # one full window of frames after the outage
        s = _stats(url)
        assert s["outages"] == 1 and s["reconnect_attempts"] >= 1, s
        assert s["fps"] > 1.2 * s["fps_mean"], s   # the stream's rate now, above the mean the outage pulled down
        text = browser.find_element("id", "stats").text
        assert "fps now" in text and "mean" in text and "outages 1" in text, text
    finally:
        source.close()
        runner.join(30)
    summary = started["summary"]
    assert summary.outages == 1 and summary.reconnects >= 1 and summary.offline_s > 2
    assert "outages 1" in "\n".join(summary.lines())
    assert json.loads(json.dumps(summary.to_dict()))["outages"] == 1
