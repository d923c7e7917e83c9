"""`import rtseg` and `rtseg --help` work with torch, onnxruntime, tensorrt and cuda-python blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import REPO

_BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "onnxruntime", "onnx", "tensorrt", "cuda", "cupy", "cv2", "triton", "av", "tqdm", "selenium")
    # what site-packages' .pth files import at start-up (cuda-bindings 12.9 imports the empty `cuda` namespace)
    PRELOADED = set(sys.modules)
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
        import rtseg, rtseg.models, rtseg.cli, rtseg.kernels, rtseg.export, rtseg.runtime
        import rtseg.kernels.device, rtseg.kernels.streams, rtseg.kernels.nvrtc, rtseg.kernels.cuda
        import rtseg.video, rtseg.video.cli, rtseg.video.sinks, rtseg.video.server, rtseg.video.stats
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and m not in PRELOADED)
        assert not heavy, heavy
        sys.argv = ["rtseg", "--help"]
        try:
            runpy.run_module("rtseg", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rtseg" in proc.stdout
    for command in ("models", "export", "info", "run"):
        assert command in proc.stdout


def test_subcommand_help_without_heavy_dependencies():
    for command, flag in (("export", "--model"), ("run", "--save-masks")):
        proc = _run(f"""
            from rtseg.cli import main
            try:
                main(["{command}", "--help"])
            except SystemExit as exc:
                assert exc.code == 0
        """)
        assert proc.returncode == 0, proc.stderr
        assert flag in proc.stdout


def test_missing_torch_is_one_line_error():
    proc = _run("""
        from rtseg.cli import main
        raise SystemExit(main(["models"]))
    """)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\\n") == 0, proc.stderr
    assert "pip install 'rtseg[export]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_device_layer_without_the_kernel_wrappers_or_cuda_python():
    """The runtime imports the device layer alone; without cuda-python its first call names the extra."""
    proc = _run("""
        import sys
        from rtseg.errors import RtsegError
        from rtseg.kernels import device, streams
        assert "rtseg.kernels.cuda" not in sys.modules
        for call in (lambda: device.alloc(16), lambda: device.pinned_empty((2, 3), "uint8"), streams.Stream):
            try:
                call()
            except RtsegError as exc:
                assert str(exc).endswith("is not installed; install it with: pip install 'rtseg[gpu]'"), exc
            else:
                raise AssertionError("no error without cuda-python")
    """)
    assert proc.returncode == 0, proc.stderr
