"""Everything around the TensorRT calls that runs without TensorRT: the optimisation profile from ``--dynamic``, the
timing cache's path, the network flags per version, the engine stamp check and its rebuild message, the progress
bar, the one-line "skipped" report and ``--require-engine``. (The engine itself: ``test_fp16_tensorrt.py``.)"""

from __future__ import annotations

import io
import json
import threading
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.bundle import InputSpec as Shapes
from rtseg.bundle import rebuild_command, stamp_problems
from rtseg.cuda.info import GpuInfo, gpu_info
from rtseg.export.engine_build import ProgressBar, default_cache_dir, profile_shapes, strongly_typed_flag_needed, timing_cache_path
from rtseg.runtime.tensorrt import check_engine_stamp, tensorrt_missing_reason
from rtseg.runtime.tensorrt import version_tuple as _version_tuple
from rtseg.sizes import parse_range, parse_size

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


def _shapes(size: str, dynamic: str | None = None) -> Shapes:
    """Shapes exactly as ``rtseg export --input-size SIZE [--dynamic RANGE]`` makes them."""
    return Shapes(parse_size(size, "--input-size"), *(parse_range(dynamic) if dynamic else ()))


def _onnx_input_dims(path: Path) -> tuple[int, ...]:
    """The input dimensions TensorRT's ONNX parser gives the network: a named (dynamic) axis becomes -1."""
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):  # (N, 3, H, W) -> (N, 4, H, W)
        return self.conv(x)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The same tiny network exported with dynamic H, W and with a fixed size."""
    torch.manual_seed(0)
    model, root = TinySeg().eval(), tmp_path_factory.mktemp("tiny")
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, axes in (("dynamic", {"input": {2: "h", 3: "w"}}), ("static", None)):
            paths[kind] = root / f"{kind}.onnx"
            torch.onnx.export(model, (torch.zeros(1, 3, 64, 96),), str(paths[kind]), input_names=["input"],
                              output_names=["logits"], opset_version=17, dynamo=False, dynamic_axes=axes)
    return paths


def test_profile_covers_the_dynamic_range(tiny_onnx):
    dims = _onnx_input_dims(tiny_onnx["dynamic"])
    assert dims == (1, 3, -1, -1)
    lo, opt, hi = profile_shapes(dims, _shapes("64x96", "32x64:128x192"))
    assert (lo, opt, hi) == ((1, 3, 32, 64), (1, 3, 64, 96), (1, 3, 128, 192))
    # A dynamic graph built for one size only: min = opt = max.
    assert profile_shapes(dims, _shapes("64x96")) == ((1, 3, 64, 96),) * 3
    # A graph whose batch axis is dynamic too (many bring-your-own models): batch 1.
    assert profile_shapes((-1, 3, -1, -1), _shapes("64x96", "32x64:128x192"))[2] == (1, 3, 128, 192)
    assert profile_shapes((-1, 3, 64, 96), _shapes("64x96")) == ((1, 3, 64, 96),) * 3


def test_fixed_graph_needs_no_profile_and_rejects_other_sizes(tiny_onnx):
    dims = _onnx_input_dims(tiny_onnx["static"])
    assert dims == (1, 3, 64, 96)
    assert profile_shapes(dims, _shapes("64x96")) is None
    with pytest.raises(RtsegError, match="fixed H=64, W=96 but the engine was asked for 32x64"):
        profile_shapes(dims, _shapes("32x64"))
    with pytest.raises(RtsegError, match="fixed H=64 but the engine was asked for 32x64"):
        profile_shapes((1, 3, 64, -1), _shapes("64x96", "32x64:128x192"))  # H fixed, a range asked for
    with pytest.raises(RtsegError, match="NCHW"):
        profile_shapes((3, -1, -1), _shapes("64x96"))


def test_strongly_typed_flag_is_passed_on_10x_only():
    for version in ("10.12.0.36", "10.13.3.9", "10.16.1.11"):
        assert strongly_typed_flag_needed(version)
    for version in ("11.0.0.114", "11.1.0", "12.0"):
        assert not strongly_typed_flag_needed(version)
    assert _version_tuple("10.12.0.36") == (10, 12, 0) and _version_tuple("11.1.0rc1") == (11, 1)
    assert _version_tuple("10.9.0") < (10, 12) <= _version_tuple("10.12.0.36")


def test_timing_cache_lives_in_the_user_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("RTSEG_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "rtseg" / "tensorrt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rtseg" / "tensorrt"
    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path / "mine"))
    path = timing_cache_path("10.12.0.36", H100)
    assert path == tmp_path / "mine" / "tensorrt" / "timing-trt10.12.0.36-sm90-nvidia-h100-80gb-hbm3.cache"
    # Same compute capability, another GPU model: another file (TensorRT refuses a cache from other device props).
    assert timing_cache_path("10.12.0.36", GpuInfo("NVIDIA H100 PCIe", "9.0")) != path
    assert timing_cache_path("11.1.0", H100) != path
    assert timing_cache_path("10.12.0.36", H100, tmp_path / "here").parent == tmp_path / "here"


def test_stamp_compares_tensorrt_version_and_compute_capability():
    built = {"tensorrt": "10.12.0.36", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert stamp_problems(built, "10.12.0.36", H100) == []
    assert stamp_problems(built, "10.12.0.36", GpuInfo("NVIDIA H100 PCIe", "9.0")) == []  # same architecture
    (problem,) = stamp_problems(built, "10.12.0.36", GpuInfo("NVIDIA GeForce RTX 3090", "8.6"))
    assert problem == ("compute capability 9.0 (NVIDIA H100 80GB HBM3; this machine has 8.6,"
                       " NVIDIA GeForce RTX 3090)")
    (problem,) = stamp_problems(built, "11.1.0", H100)
    assert problem == "TensorRT 10.12.0.36 (this machine has 11.1.0)"
    assert len(stamp_problems({}, "11.1.0", H100)) == 2  # a bundle built without TensorRT fits nothing


def test_rebuild_command_is_the_recorded_one_forced():
    cmd = "rtseg export --model fast_scnn --num-classes 19 --input-size 512x1024 --out b"
    assert rebuild_command({"build": {"command": cmd}}, Path("b")) == cmd + " --force"
    assert rebuild_command({"build": {"command": cmd + " --force"}}, Path("b")) == cmd + " --force"
    assert rebuild_command({"build": {"command": None}}, Path("x")) == "rtseg export ... --out x --force"
    assert rebuild_command({}, Path("x")) == "rtseg export ... --out x --force"


def test_engine_stamp_of_a_bundle_with_an_engine_on_a_machine_without_tensorrt(tmp_path):
    if tensorrt_missing_reason() is None:
        pytest.skip("TensorRT and a GPU are usable here")
    manifest = {"format_version": 1, "artifacts": {"engine": {"file": "model.engine", "sha256": "0"}},
                "build": {"tensorrt": "10.12.0.36", "gpu": H100.name, "compute_capability": "9.0",
                          "command": "rtseg export --onnx m.onnx --num-classes 4 --input-size 32x32 --out b"}}
    (tmp_path / "rtseg.json").write_text(json.dumps(manifest))
    with pytest.raises(RtsegError, match=f"cannot use the engine in {tmp_path}: ") as info:
        check_engine_stamp(tmp_path / "rtseg.json")
    assert str(info.value).endswith(tensorrt_missing_reason()) and "\n" not in str(info.value)
    with pytest.raises(RtsegError, match="cannot use the engine"):
        check_engine_stamp(manifest, tmp_path)  # an already-read manifest and its folder


def test_reasons_are_one_line_here():
    reason = tensorrt_missing_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are usable here")
    assert "\n" not in reason and len(reason) < 200
    try:
        gpu = gpu_info()
    except RtsegError as exc:
        assert "\n" not in str(exc)
        assert any(s in str(exc) for s in ("no NVIDIA driver", "cuda-python", "NVIDIA GPU", "CUDA"))
    else:
        assert gpu.name and gpu.compute_capability.count(".") == 1


def test_progress_bar_is_thread_safe_and_tolerates_odd_calls():
    out = io.StringIO()
    bar = ProgressBar(stream=out, width=8)
    bar.start("Building engine", 1)
    bar.step("never started", 0)  # ignored
    bar.finish("never started")  # ignored; the outer phase still runs, so no newline yet
    assert not out.getvalue().endswith("\n")

    def timing(i):
        name = f"Tactic timing {i}"
        bar.start(name, 50)
        for step in range(50):
            bar.step(name, step)
        bar.finish(name)

    threads = [threading.Thread(target=timing, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.start("Empty phase", 0)  # TensorRT promises positive counts; a zero must not divide by zero
    bar.finish("Empty phase")
    bar.finish("Building engine")  # ended before its one step was reported: shown complete
    text = out.getvalue()
    assert text.endswith("[########] 1/1 Building engine" + " " * 25 + "\n")
    assert text.count("\n") == 1
    for i in range(4):
        assert f"[########] 50/50 Tactic timing {i}" in text


def test_without_tensorrt_the_engine_step_is_skipped_in_one_line(tiny_onnx, tmp_path, capsys):
    reason = tensorrt_missing_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are usable here: the engine is built, not skipped")
    out = tmp_path / "b"
    out.mkdir()
    (out / "model.engine").write_bytes(b"an engine from another run")  # must not survive: it fits no graph here
    rc = main(["export", "--onnx", str(tiny_onnx["dynamic"]), "--num-classes", "4", "--input-size", "64x96",
               "--dynamic", "32x64:128x192", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert f"  engine     skipped: {reason}\n" in printed.out
    assert [line for line in printed.out.splitlines() if "engine" in line] == [f"  engine     skipped: {reason}"]
    man = json.loads((out / "rtseg.json").read_text())
    assert man["artifacts"]["engine"] is None and not (out / "model.engine").exists()
    assert man["verification"]["engine"] == {"skipped": reason, "passed": True}
    assert man["build"]["tensorrt"] is None and man["build"]["compute_capability"] is None
    with pytest.raises(RtsegError, match=r"has no TensorRT engine; build one on this machine with: rtseg export"
                                         r" --onnx .* --force"):
        check_engine_stamp(out)


def test_require_engine_turns_the_skip_into_an_error(tiny_onnx, tmp_path, capsys):
    reason = tensorrt_missing_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are usable here: --require-engine is satisfied")
    out = tmp_path / "b"
    rc = main(["export", "--onnx", str(tiny_onnx["dynamic"]), "--num-classes", "4", "--input-size", "64x96",
               "--require-engine", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"rtseg: error: --require-engine: {reason}"], err
    assert not out.exists(), "--require-engine must fail before any slow step writes to the bundle"
