"""`rtseg run` from the command line: bad inputs are one line each, signals stop cleanly with a playable mp4."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import av
import cv2
import numpy as np
import pytest

from rtseg.cli import main

from ..conftest import REPO
from .media import damaged_copy, make_faststart_video, make_video, read_index, truncated_copy


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["run", *map(str, argv), "--quiet"])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rtseg: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_faststart_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 60)


def test_bad_sources_are_one_line_each(bundle, tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        refused = f"rtsp://127.0.0.1:{s.getsockname()[1]}/stream"
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        tmp_path / "empty.mp4": "empty (0 bytes)",
        tmp_path / "text.mp4": "cannot read",
        refused: "cannot connect",
        "http://127.0.0.1:9/none.mjpg": "cannot connect",
        "57": "webcam 57",
        tmp_path / "*.nothing": "no files match",
    }
    for source, expected in cases.items():
        code, err = _run(capsys, bundle, "--source", source)
        assert code == 2 and expected in _one_error_line(err), (source, err)


def test_bad_outputs_are_one_line_and_nothing_is_written(bundle, clip, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = _run(capsys, bundle, "--source", clip, "--save", tmp_path / "afile" / "out.mp4")
    assert code == 2 and "--save" in _one_error_line(err)
    code, err = _run(capsys, bundle, "--source", clip, "--show")
    assert code == 2 and "--serve" in _one_error_line(err)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, err = _run(capsys, bundle, "--source", clip, "--serve", busy.getsockname()[1],
                         "--save", tmp_path / "out.mp4", "--stats", tmp_path / "stats.jsonl",
                         "--save-masks", tmp_path / "masks")
    assert code == 2 and "already in use" in _one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("kind", ["truncated", "damaged"])
def test_broken_video_keeps_what_was_written(bundle, clip, tmp_path, capsys, kind):
    broken = (truncated_copy(clip, tmp_path / "cut.mp4", 0.6) if kind == "truncated"
              else damaged_copy(clip, tmp_path / "bad.mp4"))
    out = tmp_path / "out.mp4"
    code, err = _run(capsys, bundle, "--source", broken, "--save", out, "--save-masks", tmp_path / "masks")
    assert code == 2 and "ended early" in _one_error_line(err)
    with av.open(str(out)) as container:
        written = sum(1 for _ in container.decode(video=0))
    assert 0 < written < 60
    assert written == len(list((tmp_path / "masks").glob("*.png")))


def test_image_folder_skips_non_images_with_a_warning(bundle, tmp_path, capsys, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((40, 60, 3), 40 * i, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a cut PNG: unreadable
    code = main(["run", str(bundle), "--source", str(folder), "--save-masks", str(tmp_path / "masks"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("skipped 3.png" in w for w in warnings) and any("skipped notes.txt" in w for w in warnings)
    assert "ERROR" not in err  # no OpenCV chatter
    assert sorted(p.name for p in (tmp_path / "masks").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    assert "skipped 2" in out


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", 1500, (64, 96))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_halfway_gives_exit_code_and_a_playable_mp4(bundle, long_video, tmp_path, sig, code):
    video = long_video
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rtseg", "run", str(bundle), "--source", str(video), "--save",
                             str(out), "--stats", str(stats), "--alpha", "0", "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not stats.exists() or stats.read_text().count("\n") < 30):
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stats.read_text().splitlines()[-1])["summary"]
    assert summary["signal"] == int(sig) and 30 <= summary["frames"] < 1500
    with av.open(str(out)) as container:
        indices = [read_index(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    assert indices == list(range(summary["frames"]))  # every processed frame, in order
    assert f"stopped by {sig.name}" in stdout
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert os.path.getsize(out) > 0
