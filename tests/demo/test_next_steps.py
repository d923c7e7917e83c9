"""``rtseg demo`` ends with the commands that take a user to their own data (issue #21): each printed line runs as
printed (the webcam one aside: no camera here) and does what its note says."""

from __future__ import annotations

import json
import shlex

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("av")

from rtseg.bundle import read_manifest
from rtseg.cli import main

pytestmark = pytest.mark.slow  # one export of the shipped model for the demo and one for the printed command


def test_the_printed_next_commands_run_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--max-frames", "6", "--video-size", "180x320", "--bench-frames", "0"]) == 0
    printed = capsys.readouterr().out
    assert "runs/demo/bundle" in printed
    steps = printed[printed.index("next steps"):]
    commands = [line.strip() for line in steps.splitlines() if line.startswith("  rtseg ")]
    assert [shlex.split(c)[1] for c in commands] == ["run", "run", "eval", "export"]
    # the bundle records the 7 classes the street model was trained on
    assert read_manifest("runs/demo/bundle").model.source["classes_trained"] == [
        "road", "sidewalk", "building", "vegetation", "sky", "person", "car"]

    run, webcam, evaluate, export = (shlex.split(c)[1:] for c in commands)
    assert webcam[-2:] == ["0", "--serve"]
    assert main(run) == 0
    assert (tmp_path / "runs" / "run" / "1" / "street.mp4").stat().st_size > 0
    assert main(evaluate) == 0
    report = json.loads((tmp_path / "runs" / "eval" / "1" / "eval.json").read_text())
    assert report["images"] == 6 and report["mean_iou"] > 0.5
    assert report["classes_trained"] == ["road", "sidewalk", "building", "vegetation", "sky", "person", "car"]
    assert {c["name"] for c in report["per_class"] if c["iou"] is not None} >= {"road", "building", "car"}
    assert main(export) == 0
    assert read_manifest(tmp_path / "runs" / "export" / "fast_scnn").passed
