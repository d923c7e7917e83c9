"""`import rtseg` and `rtseg --help` work with torch, onnxruntime, tensorrt and cuda-python blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import REPO

_BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "onnxruntime", "onnx", "tensorrt", "cuda", "cupy", "cv2", "triton", "ray", "tritonclient",
               "starlette", "fastapi", "grpc", "av", "tqdm", "selenium")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
    sys.meta_path.insert(0, Block())
    # What the interpreter loaded before any rtseg code (cuda-python's .pth hook imports the 'cuda' namespace).
    PRELOADED = set(sys.modules)
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_import_and_help_without_heavy_dependencies():
    proc = _run("""
        import runpy, sys
        import rtseg, rtseg.models, rtseg.cli, rtseg.kernels, rtseg.export, rtseg.runtime, rtseg.models.caffe
        import rtseg.cuda, rtseg.cuda.memory, rtseg.cuda.streams, rtseg.cuda.nvrtc, rtseg.cuda.info
        import rtseg.kernels.cuda, rtseg.kernels.cubin
        import rtseg.files, rtseg.interrupts
        import rtseg.serve, rtseg.serve.cli, rtseg.serve.client, rtseg.serve.codec, rtseg.triton, rtseg.triton.cli
        import rtseg.eval, rtseg.eval.cli, rtseg.bench, rtseg.bench.cli
        import rtseg.export.options, rtseg.export.size_check, rtseg.export.recipes, rtseg.models.file_kind
        import rtseg.video, rtseg.video.cli, rtseg.video.sinks, rtseg.video.server, rtseg.video.stats
        import rtseg.demo, rtseg.demo.cli, rtseg.demo.run, rtseg.demo.train, rtseg.demo.video, rtseg.demo.summary
        import rtseg.export.memory, rtseg.export.ranges
        heavy = sorted(m for m in set(sys.modules) - PRELOADED if m.split(".")[0] in BLOCKED)
        assert not heavy, heavy
        sys.argv = ["rtseg", "--help"]
        try:
            runpy.run_module("rtseg", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rtseg" in proc.stdout
    for command in ("models", "export", "info", "serve", "triton", "bench", "eval", "run"):
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
        from rtseg.cuda import memory as device, streams
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


def test_serve_and_triton_help_and_missing_ray():
    # `rtseg serve --help` and `rtseg triton --help` need neither Ray nor tritonclient; serving without Ray is a
    # one-line error naming the extra
    proc = _run("""
        import json, sys, tempfile
        from rtseg.cli import main
        for command in ("serve", "triton"):
            try:
                main([command, "--help"])
            except SystemExit as exc:
                assert exc.code == 0
        bundle = tempfile.mkdtemp()
        open(bundle + "/rtseg.json", "w").write(json.dumps({"format_version": 1}))
        raise SystemExit(main(["serve", bundle]))
    """)
    assert proc.returncode == 2, proc.stderr
    assert "--replicas" in proc.stdout and "--max-batch" in proc.stdout and "--graph" in proc.stdout
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "pip install 'rtseg[serve]'" in proc.stderr and "Traceback" not in proc.stderr
