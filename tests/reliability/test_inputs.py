"""Case 19: inputs that were read wrong without a word. Colour masks given to ``eval --pred``, a video cut short
under ``eval --against``, a one-frame source under ``bench`` and a truncated JPEG in an image folder: each is read
for what it is, or skipped with a line that says so (the error lines themselves are cases of table.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from rtseg.cli import main
from rtseg.errors import RtsegError

from ..video.media import make_faststart_video, numbered_frame, truncated_copy
from .test_truncated import ffmpeg_frames

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")
pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'rtseg[eval]')")


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rtseg: error:")]


def test_colour_masks_are_read_back_through_the_bundle_palette(small_bundle, tmp_path, capsys):
    from rtseg.bundle import read_manifest

    palette = np.asarray(read_manifest(small_bundle).model.palette, np.uint8)
    rng = np.random.default_rng(0)
    labels, colour = tmp_path / "labels", tmp_path / "colour"
    labels.mkdir(), colour.mkdir()
    for i in range(3):
        ids = rng.integers(0, len(palette), (32, 48)).astype(np.uint8)
        ids[:, :8] = 5  # pole, grey (153, 153, 153) in the Cityscapes palette: never read as "class 153"
        cv2.imwrite(str(labels / f"{i:06d}.png"), ids)
        cv2.imwrite(str(colour / f"{i:06d}.png"), palette[ids][..., ::-1])  # BGR, as the mask sink writes
    out = tmp_path / "eval"
    code = main(["eval", str(small_bundle), "--pred", str(colour), "--labels", str(labels), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and not _errors(err), err
    assert "holds colour masks; read back to class ids through the palette of the bundle" in err
    report = json.loads((out / "eval.json").read_text())
    assert report["mean_iou"] == pytest.approx(1.0) and report["pixel_accuracy"] == pytest.approx(1.0)


def test_colour_masks_with_other_colours_are_refused(tmp_path):
    from rtseg.eval.labels import read_prediction

    palette = np.array([[128, 64, 128], [70, 70, 70], [153, 153, 153]], np.uint8)
    image = palette[np.array([[0, 1], [2, 1]])].copy()
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), image[..., ::-1])
    ids, from_colour = read_prediction(path, 3, palette, "the test palette")
    assert from_colour and ids.tolist() == [[0, 1], [2, 1]]
    image[0, 0] = (1, 2, 3)
    cv2.imwrite(str(path), image[..., ::-1])
    with pytest.raises(RtsegError, match="looks like a colour mask: it holds colours that are not in the test pal"):
        read_prediction(path, 3, palette, "the test palette")
    cv2.imwrite(str(path), np.array([[0, 1], [2, 1]], np.uint8))  # class ids stay class ids
    assert read_prediction(path, 3, palette, "the test palette")[0].tolist() == [[0, 1], [2, 1]]


def test_eval_against_a_cut_video_scores_its_frames_then_says_it_ended_early(small_bundle, tmp_path, capfd):
    cut = truncated_copy(make_faststart_video(tmp_path / "full.mp4", 60, (64, 96)), tmp_path / "cut.mp4", 0.5)
    expected = ffmpeg_frames(cut)
    assert 0 < expected < 60
    out = tmp_path / "parity"
    code = main(["eval", str(small_bundle), "--against", "onnxruntime", "--data", str(cut), "--out", str(out)])
    err = capfd.readouterr().err
    (line,) = _errors(err)
    assert code == 2 and f"ended early: {expected} of 60 frames decoded" in line, err
    assert "[h264" not in err and "[mov," not in err, err  # FFmpeg's own lines stay out
    assert json.loads((out / "eval.json").read_text())["frames"] == expected


def test_bench_says_why_tier_c_was_skipped(small_bundle, tmp_path, capsys):
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), numbered_frame(0, 64, 96))
    out = tmp_path / "bench"
    code = main(["bench", str(small_bundle), "--source", str(image), "--tiers", "a,c", "--no-naive", "--max-frames",
                 "2", "--warmup", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("rtseg: warning:")]
    assert len(warnings) == 1 and "tier (c)" in warnings[0] and "only 1 frame" in warnings[0], captured.err
    doc = json.loads((out / "bench.json").read_text())
    assert [r["tier"] for r in doc["rows"]] == ["a"] and [s["tier"] for s in doc["skipped"]] == ["c"]


def test_a_truncated_jpeg_in_a_folder_is_skipped_and_counted(small_bundle, tmp_path, capfd, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), numbered_frame(i, 64, 96))
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data[: len(data) // 2])
    masks = tmp_path / "masks"
    code = main(["run", str(small_bundle), str(folder), "--save-masks", str(masks), "--no-save", "--quiet"])
    out, err = capfd.readouterr()
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("skipped 1.jpg (a truncated JPEG" in w for w in warnings), warnings
    assert "Premature end" not in err  # libjpeg never saw it
    assert sorted(p.name for p in masks.glob("*.png")) == ["000000.png", "000002.png"]
    assert "skipped 1" in out
