"""benchmarks/gpu_acceptance.sh (issue #23): its dry mode proves every step it names exists; without a GPU the real
mode refuses in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_acceptance.sh"


def _run(*args: str, env=None):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env)


def test_dry_mode_finds_every_step_it_names():
    out = _run("--dry")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines and all(" ok " in line for line in lines), out.stdout
    for named in ("test_no_host_synchronisation_between_stages", "test_cuda_gpu.py", "gpu-marked tests",
                  "rtseg bench --help", "rtseg export --help", "fast_scnn, bisenetv1"):
        assert any(named in line for line in lines), named


def test_without_a_gpu_it_refuses_in_one_line(tmp_path):
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
        pytest.skip("this machine has a GPU: the real mode would run")
    out = _run("--out", str(tmp_path))
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtseg: error:") and "GPU" in err[0], out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
