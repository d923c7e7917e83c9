"""Export under a memory limit: a child process with ``RLIMIT_AS`` set completes at a size that fits in bounded
memory, and stops with the one-line estimate error at a size that does not; the streamed ranges equal a direct
measurement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from rtseg.export.memory import estimate_export, onnx_activation_peak
from rtseg.export.ranges import RangeCollectingRunner, batch_frames, collect_ranges
from rtseg.export.verify import onnxruntime_runner

REPO = Path(__file__).resolve().parents[2]
GB = 1e9
LIMIT_ABOVE_IMPORTS = 2.3 * GB  # address space allowed beyond the child's size once torch/ORT/ModelOpt are loaded

# The child loads the heavy modules first, so the limit counts from where an export starts, then sets the limit.
CHILD = """
import resource, sys
import torch, onnx, onnxruntime, modelopt.onnx.autocast  # noqa: F401
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
limit = size + int(float(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from rtseg.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _export_limited(out: Path, size: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "2"}  # fewer per-thread malloc reservations
    cmd = [sys.executable, "-c", CHILD, str(LIMIT_ABOVE_IMPORTS), "export", "--model", "fast_scnn",
           "--num-classes", "19", "--input-size", size, "--calib-frames", "2", "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _all_tensor_bytes(path: Path) -> int:
    """What marking every tensor a graph output holds for one frame (the unbounded way of finding ranges)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    return sum(int(np.prod([d.dim_value for d in vi.type.tensor_type.shape.dim])) * 4
               for vi in model.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT)


def test_export_completes_under_a_limit_and_a_size_that_cannot_fit_gets_one_line(tmp_path):
    out = tmp_path / "fits"
    proc = _export_limited(out, "512x1024")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "rtseg.json").is_file() and (out / "model.fp16.onnx").is_file()
    # The limit is below what the unbounded range collection needed on top: every tensor of both frames at once.
    assert 2 * _all_tensor_bytes(out / "model.onnx") > 0.8 * GB

    too_big = tmp_path / "too-big"
    proc = _export_limited(too_big, "2048x4096")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtseg: error: this export needs about"), proc.stderr[-2000:]
    assert "RLIMIT_AS" in lines[0] and "--calib-frames" in lines[0] and "Traceback" not in proc.stderr
    assert not too_big.exists()  # stopped before the output folder was made


def test_streamed_ranges_match_every_tensor_measured_directly(tmp_path):
    """The in-graph ReduceMax/ReduceMin give the same extremes as reading every tensor out (small graph)."""
    import onnxruntime as ort

    from .test_cli import TinyUNet, _export_onnx

    path = _export_onnx(TinyUNet(3), tmp_path / "unet.onnx", size=(32, 48))
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    frames = np.random.default_rng(0).standard_normal((3, 3, 32, 48)).astype(np.float32) * 4
    ranges = collect_ranges(model, batch_frames({"image": frames}))

    direct = onnx.ModelProto()
    direct.CopyFrom(model)
    names = [vi.name for vi in model.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    direct.graph.output.extend([vi for vi in model.graph.value_info if vi.name in names])
    sess = ort.InferenceSession(direct.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [sess.run(names, {"image": frames[i:i + 1]}) for i in range(3)]
    assert len(names) > 20
    for k, name in enumerate(names):
        values = np.stack([o[k] for o in outs])
        assert ranges[name].max_val == pytest.approx(float(values.max()), rel=1e-5, abs=1e-6), name
        assert ranges[name].min_val == pytest.approx(float(values.min()), rel=1e-5, abs=1e-6), name
        assert ranges[name].shape == values.shape[1:]
    assert ranges["image"].absmax == pytest.approx(float(np.abs(frames).max()))

    # The verification runner that collects the same ranges while it checks the FP32 graph.
    runner = RangeCollectingRunner(path, (32, 48))
    plain = onnxruntime_runner(path)
    for i in range(3):
        np.testing.assert_allclose(runner(frames[i:i + 1]), plain(frames[i:i + 1]), rtol=1e-5, atol=1e-5)
    runner(np.zeros((1, 3, 64, 96), np.float32))  # another size: checked, not counted in the ranges
    assert runner.frames == 3 and set(runner.ranges) == set(ranges)
    assert all((runner.ranges[k].min_val, runner.ranges[k].max_val) == (r.min_val, r.max_val)
               for k, r in ranges.items())


def test_estimate_grows_with_size_and_activation_walk_sees_the_largest_tensors(tmp_path):
    from .test_cli import TinyUNet, _export_onnx

    path = _export_onnx(TinyUNet(3), tmp_path / "unet.onnx", size=(32, 48))
    small, large = (onnx_activation_peak(path, "image", s) for s in ((64, 96), (128, 192)))
    # At least the two 8-channel full-size maps of the first block and the skip kept for the decoder.
    assert small >= 2 * 8 * 64 * 96 * 4
    assert large == pytest.approx(4 * small, rel=0.05)
    a = estimate_export({(64, 96): 2}, 3, "logits", small, 10_000)
    b = estimate_export({(128, 192): 4}, 3, "logits", large, 10_000)
    assert b.needed > a.needed and b.frames == 4 * 2 * a.frames
    assert "available" in a.text() and a.available > 0


def test_the_pytorch_model_is_freed_once_its_graph_is_exported(tmp_path):
    """The model's weights are not held while the ONNX-side steps run (540 MB for FCN-VGG16)."""
    import gc

    from rtseg.export.pipeline import ExportOptions, run_export
    from rtseg.models.fast_scnn import FastSCNN

    def alive() -> int:
        gc.collect()
        return sum(type(o) is FastSCNN for o in gc.get_objects())

    before, seen = alive(), {}

    def say(line: str) -> None:
        if line.startswith("rtseg export:"):
            seen["start"] = alive()
        elif line.lstrip().startswith("onnx "):  # the FP32 graph verified: the next steps need no PyTorch
            seen["fp32 checked"] = alive()

    opts = ExportOptions(out=tmp_path / "b", model="fast_scnn", num_classes=19, input_size=(64, 128),
                         calib_frames=1, precision="fp32")
    assert run_export(opts, say=say).passed
    assert seen == {"start": before + 1, "fp32 checked": before}
