"""Case 14: two Ctrl-C 0.1 s apart while rtseg run saves a video: exit 130, a valid mp4 with every frame the
summary reports, no .partial left (a second signal stops at once, outputs still finalised)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ..conftest import REPO
from ..video.media import make_video

pytest.importorskip("av", reason="PyAV is not installed (pip install 'rtseg[video]')")


@pytest.mark.parametrize("after_s", [0.3])
def test_two_interrupts_leave_a_valid_video(fast_scnn_bundle, tmp_path, after_s):
    ffprobe = shutil.which("ffprobe") or pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    video = make_video(tmp_path / "long.mp4", 2000, (64, 96))
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "rtseg", "run", str(fast_scnn_bundle), str(video), "--save",
                             str(out), "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    partial = tmp_path / ".o.mp4.partial"
    deadline = time.monotonic() + 60
    while not (partial.is_file() and partial.stat().st_size > 0) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and not partial.exists()
    reported = int(re.search(r"save: .*\((\d+) frames\)", stdout).group(1))
    probe = subprocess.run([ffprobe, "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
                            "-of", "csv=p=0", str(out)], capture_output=True, text=True)
    assert probe.returncode == 0 and int(probe.stdout.strip()) == reported > 0, (probe.stdout, probe.stderr)
