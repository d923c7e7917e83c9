"""A reader that goes away (`rtseg models | head -1`) ends the command quietly: no traceback, exit 141 (SIGPIPE)."""

from __future__ import annotations

import subprocess
import sys


def test_closed_stdout_is_not_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "rtseg", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
