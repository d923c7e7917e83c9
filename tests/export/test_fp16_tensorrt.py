"""The FP16 graph keeps out-of-range nodes in FP32; the TensorRT layer builds and runs a tiny engine (GPU only)."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.export.fp16 import ATTEMPTS, available_converters, convert
from rtseg.export.engine_build import ProgressBar
from rtseg.runtime.tensorrt import check_engine_stamp
from rtseg.export.verify import onnxruntime_runner


class Overflowing(nn.Module):
    """A conv net whose middle activations exceed the FP16 range (65504) before being scaled back."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):  # (N, 3, H, W) -> (N, 4, H, W)
        y = torch.relu(self.a(x))
        big = self.b(y) * 1e6  # far beyond FP16
        return self.c(big * 1e-6)


@pytest.fixture(scope="module")
def overflow_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = Overflowing().eval()
    path = tmp_path_factory.mktemp("fp16") / "overflow.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {2: "h", 3: "w"}})
    return path, model


@pytest.mark.parametrize("converter", ["rtseg", "autocast"])
def test_out_of_range_nodes_stay_fp32(converter, overflow_onnx, tmp_path):
    if converter not in available_converters():
        pytest.skip("nvidia-modelopt is not installed")
    path, model = overflow_onnx
    calib = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    dst = tmp_path / "fp16.onnx"
    assert convert(path, dst, calib, "input", ATTEMPTS[0], converter) == converter
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(dst)))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay float32
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.value_info}
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert types.get(convs[0].output[0]) == onnx.TensorProto.FLOAT16  # the in-range first conv runs in FP16
    big_muls = [n for n in graph.graph.node if n.op_type == "Mul"]
    assert all(types.get(n.output[0]) == onnx.TensorProto.FLOAT for n in big_muls)  # 1e6-scaled values: FP32
    x = np.random.default_rng(1).standard_normal((1, 3, 48, 40)).astype(np.float32)  # another size: dynamic kept
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = onnxruntime_runner(dst)(x)
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() < 2e-2 * max(1.0, np.abs(ref).max())


def test_progress_bar_draws_phases():
    out = io.StringIO()
    bar = ProgressBar(stream=out, width=10)
    bar.start("Building engine", 4)
    bar.start("Tactic timing", 2)
    bar.step("Tactic timing", 1)
    bar.finish("Tactic timing")
    bar.step("Building engine", 3)
    bar.finish("Building engine")
    text = out.getvalue()
    assert "TensorRT build [..........] 0/4 Building engine" in text
    assert "[##########] 2/2 Tactic timing" in text  # the inner phase, shown while it runs
    assert "[##########] 4/4 Building engine" in text
    assert text.endswith("\n") and text.count("\n") == 1  # one line, redrawn in place


def test_engine_stamp_without_engine_names_the_rebuild_command(tmp_path):
    manifest = {"format_version": 1, "artifacts": {"onnx": {"file": "model.onnx"}, "engine": None},
                "build": {"command": "rtseg export --model fast_scnn --input-size 512x1024 --out b"}}
    (tmp_path / "rtseg.json").write_text(json.dumps(manifest))
    with pytest.raises(RtsegError, match="rtseg export --model fast_scnn .* --force"):
        check_engine_stamp(tmp_path)
    with pytest.raises(RtsegError, match="no bundle manifest"):
        check_engine_stamp(tmp_path / "elsewhere")


@pytest.mark.tensorrt
def test_tiny_engine_builds_runs_and_checks_its_stamp(overflow_onnx, tmp_path, monkeypatch, capsys):
    from rtseg.cli import main
    from rtseg.cuda.info import GpuInfo
    from rtseg.export.engine_build import timing_cache_path
    from rtseg.runtime.tensorrt import TensorRTRunner as EngineRunner

    monkeypatch.setenv("RTSEG_CACHE_DIR", str(tmp_path / "cache"))
    path, model = overflow_onnx
    out = tmp_path / "bundle"
    assert main(["export", "--onnx", str(path), "--num-classes", "4", "--input-size", "32x32", "--dynamic",
                 "16x16:64x64", "--workspace", "256", "--require-engine", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "TensorRT build [" in printed.err  # the builder's progress bar
    man = json.loads((out / "rtseg.json").read_text())
    assert man["artifacts"]["engine"]["file"] == "model.engine"
    assert man["verification"]["engine"]["agreement"] >= 0.995
    assert [s["size"] for s in man["verification"]["engine"]["per_size"]] == [[32, 32], [16, 16], [64, 64]]
    build = man["build"]
    assert build["tensorrt"] and build["gpu"] and build["compute_capability"]
    cache = timing_cache_path(build["tensorrt"], GpuInfo(build["gpu"], build["compute_capability"]))
    assert cache.parent == tmp_path / "cache" / "tensorrt" and cache.stat().st_size > 0
    assert check_engine_stamp(out) == out / "model.engine"

    # The engine against ONNX Runtime on the FP32 graph, at a size inside the profile that was never verified.
    x = np.random.default_rng(2).standard_normal((1, 3, 48, 64)).astype(np.float32)
    ref = onnxruntime_runner(out / "model.onnx")(x)  # (1, 4, 48, 64)
    with EngineRunner(out / "model.engine") as run:
        got = run(x)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.abs(got - ref).max() <= 2e-2 * max(1.0, float(np.abs(ref).max()))  # FP16 compute
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99
        with torch.inference_mode():
            assert (got.argmax(1) == model(torch.from_numpy(x)).numpy().argmax(1)).mean() >= 0.99
        with pytest.raises(RtsegError, match=r"shapes from \[1, 3, 16, 16\] to \[1, 3, 64, 64\]"):
            run(np.zeros((1, 3, 80, 80), np.float32))  # outside the profile

    man["build"]["compute_capability"] = "1.0"  # an engine built for another GPU
    (out / "rtseg.json").write_text(json.dumps(man))
    with pytest.raises(RtsegError, match="rebuild it with: rtseg export .* --force"):
        check_engine_stamp(out)


class TwoHeads(nn.Module):
    """Logits and their argmax as two outputs: a float and an integer engine output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x):  # (N, 3, H, W) -> (N, 5, H, W), (N, H, W)
        logits = self.conv(x)
        return logits, logits.argmax(1)


@pytest.mark.tensorrt
def test_fixed_size_fp32_engine_with_two_outputs(tmp_path):
    import onnxruntime as ort

    from rtseg.export.engine_build import build_engine
    from rtseg.runtime.tensorrt import TensorRTRunner as EngineRunner
    from rtseg.bundle import InputSpec as Shapes

    torch.manual_seed(0)
    src = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoHeads().eval(), (torch.zeros(1, 3, 24, 40),), str(src), input_names=["image"],
                          output_names=["logits", "labels"], opset_version=17, dynamo=False)
    engine = tmp_path / "two.engine"
    stamp = build_engine(src, engine, "image", Shapes((24, 40)), workspace_mib=64, cache_dir=tmp_path / "cache",
                         progress=False)  # a fixed-size graph: no optimisation profile
    assert engine.stat().st_size > 0 and set(stamp) == {"tensorrt", "gpu", "compute_capability"}
    x = np.random.default_rng(3).standard_normal((1, 3, 24, 40)).astype(np.float32)
    ref_logits, ref_labels = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with EngineRunner(engine) as logits_run, EngineRunner(engine, output="labels") as labels_run:
        logits, labels = logits_run(x), labels_run(x)
        assert logits.dtype == np.float32 and np.abs(logits - ref_logits).max() < 1e-2  # FP32 (TF32 convs)
        assert labels.dtype.kind == "i" and labels.shape == ref_labels.shape == (1, 24, 40)
        assert (labels == ref_labels).mean() >= 0.99
        with pytest.raises(RtsegError, match=r"only the shape \[1, 3, 24, 40\]"):
            logits_run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(RtsegError, match="no output 'mask'"):
        EngineRunner(engine, output="mask")

    # A second build reads the timing cache the first one wrote; a corrupt cache file is replaced, not fatal.
    cache = next((tmp_path / "cache").glob("timing-*.cache"))
    build_engine(src, tmp_path / "again.engine", "image", Shapes((24, 40)), cache_dir=tmp_path / "cache",
                 progress=False)
    cache.write_bytes(b"not a timing cache")
    build_engine(src, tmp_path / "third.engine", "image", Shapes((24, 40)), cache_dir=tmp_path / "cache",
                 progress=False)
    assert cache.read_bytes() != b"not a timing cache"
