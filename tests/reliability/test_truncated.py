"""Case 6: a file cut short keeps its last decodable frames: rtseg hands out as many frames as FFmpeg decodes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rtseg.cli import main

from ..video.media import make_faststart_video, truncated_copy

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


def ffmpeg_frames(path) -> int:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)")
    out = subprocess.run([ffmpeg, "-v", "quiet", "-i", str(path), "-vsync", "passthrough", "-f", "framemd5", "-"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9])
def test_a_cut_file_gives_every_frame_ffmpeg_decodes(fast_scnn_bundle, tmp_path, capsys, keep):
    full = make_faststart_video(tmp_path / "full.mp4", 60, (64, 96))
    cut = truncated_copy(full, tmp_path / "cut.mp4", keep)
    expected = ffmpeg_frames(cut)
    assert 0 < expected < 60
    masks = tmp_path / "masks"
    code = main(["run", str(fast_scnn_bundle), str(cut), "--quiet", "--save-masks", str(masks)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"{expected} of 60 frames decoded" in err, err
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in range(expected)]
