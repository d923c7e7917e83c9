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
from rtseg.export.tensorrt import ProgressBar, check_engine_stamp
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
def test_tiny_engine_builds_runs_and_checks_its_stamp(overflow_onnx, tmp_path):
    from rtseg.cli import main

    path, model = overflow_onnx
    out = tmp_path / "bundle"
    assert main(["export", "--onnx", str(path), "--num-classes", "4", "--input-size", "32x32", "--dynamic",
                 "16x16:64x64", "--require-engine", "--out", str(out)]) == 0
    man = json.loads((out / "rtseg.json").read_text())
    assert man["artifacts"]["engine"]["file"] == "model.engine"
    assert man["verification"]["engine"]["agreement"] >= 0.995
    assert man["build"]["tensorrt"] and man["build"]["compute_capability"]
    assert check_engine_stamp(out) == out / "model.engine"

    from rtseg.export.tensorrt import EngineRunner

    x = np.random.default_rng(2).standard_normal((1, 3, 48, 64)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = EngineRunner(out / "model.engine")(x)
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).mean() >= 0.99

    man["build"]["compute_capability"] = "1.0"  # an engine built for another GPU
    (out / "rtseg.json").write_text(json.dumps(man))
    with pytest.raises(RtsegError, match="rebuild it with: rtseg export"):
        check_engine_stamp(out)
