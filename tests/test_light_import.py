"""`import rtseg` and `rtseg --help` work with torch, onnxruntime, tensorrt and cuda-python blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import REPO

_BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "onnxruntime", "onnx", "tensorrt", "cuda", "cupy", "cv2", "triton")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_import_and_help_without_heavy_dependencies():
    proc = _run("""
        import runpy, sys
        import rtseg, rtseg.models, rtseg.cli, rtseg.kernels, rtseg.export
        import rtseg.export.memory, rtseg.export.ranges
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not heavy, heavy
        sys.argv = ["rtseg", "--help"]
        try:
            runpy.run_module("rtseg", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rtseg" in proc.stdout
    for command in ("models", "export"):
        assert command in proc.stdout


def test_subcommand_help_without_heavy_dependencies():
    proc = _run("""
        from rtseg.cli import main
        try:
            main(["export", "--help"])
        except SystemExit as exc:
            assert exc.code == 0
    """)
    assert proc.returncode == 0, proc.stderr
    assert "--model" in proc.stdout


def test_missing_torch_is_one_line_error():
    proc = _run("""
        from rtseg.cli import main
        raise SystemExit(main(["models"]))
    """)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\\n") == 0, proc.stderr
    assert "pip install 'rtseg[export]'" in proc.stderr
    assert "Traceback" not in proc.stderr
