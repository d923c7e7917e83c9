"""``rtseg triton BUNDLE DIR``: config.pbtxt parsed by Triton's own ModelConfig protobuf matches the bundle, the
batch-enabled graph gives every frame what the bundle's graph gives it alone, bad input is one line."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                         reason="tritonclient is not installed (pip install 'rtseg[triton]')")
from google.protobuf import text_format  # noqa: E402

from rtseg.cli import main  # noqa: E402
from rtseg.triton.batch_axis import batched_graph, check_batched  # noqa: E402


def _config(model_dir) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def _graph_dims(path) -> tuple[list, list]:
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    return dims(graph.input[0]), dims(graph.output[0])


def _profile_params(config) -> dict:
    [accel] = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    return dict(accel.parameters)


def _same_per_frame(bundle, model_dir, size, batch=3):
    """Run the repository's graph on a batch and the bundle's graph frame by frame: same outputs."""
    frames = np.random.default_rng(1).random((batch, 3, *size), dtype=np.float32)  # (N, 3, H, W)
    repo = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    own = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    together = repo.run(None, {"input": frames})[0]
    alone = np.concatenate([own.run(None, {"input": frames[i:i + 1]})[0] for i in range(batch)])
    assert together.shape == alone.shape
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


def test_fixed_size_bundle(fast_scnn_bundle, tmp_path, capsys):
    manifest = json.loads((fast_scnn_bundle / "rtseg.json").read_text())
    assert main(["triton", str(fast_scnn_bundle), str(tmp_path), "--max-batch", "4", "--queue-delay-us", "500"]) == 0
    model_dir = tmp_path / "fast_scnn"
    assert "dynamic batching up to 4" in capsys.readouterr().out
    config = _config(model_dir)
    assert config.name == "fast_scnn" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 4
    [inp], [out] = config.input, config.output
    assert inp.name == manifest["input"]["name"] == "input" and inp.data_type == mc.TYPE_FP32
    assert list(inp.dims) == [3, 64, 128]
    graph_in, graph_out = _graph_dims(fast_scnn_bundle / "model.onnx")
    assert graph_in == [1, 3, 64, 128]
    assert out.name == manifest["output"]["name"] == "logits" and out.data_type == mc.TYPE_FP32
    assert list(out.dims) == graph_out[1:] == [19, 8, 16]
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 500
    params = _profile_params(config)
    assert (params["trt_profile_min_shapes"], params["trt_profile_opt_shapes"], params["trt_profile_max_shapes"]) \
        == ("input:1x3x64x128", "input:4x3x64x128", "input:4x3x64x128")
    # the served graph: batch axis symbolic, each frame of a batch equal to the bundle's graph on it alone
    assert _graph_dims(model_dir / "1" / "model.onnx") == (["batch", 3, 64, 128], ["batch", 19, 8, 16])
    _same_per_frame(fast_scnn_bundle, model_dir, (64, 128))
    assert json.loads((model_dir / "rtseg.json").read_text()) == manifest
    readme = (model_dir / "README.md").read_text()
    assert "align_corners=True" in readme and "upsample_argmax" in readme and "18 bicycle" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_dynamic_bundle(fast_scnn_dynamic_bundle, tmp_path):
    manifest = json.loads((fast_scnn_dynamic_bundle / "rtseg.json").read_text())
    assert main(["triton", str(fast_scnn_dynamic_bundle), str(tmp_path), "--name", "fs_dyn"]) == 0
    model_dir = tmp_path / "fs_dyn"
    config = _config(model_dir)
    assert config.name == "fs_dyn" and config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, -1, -1]
    assert list(config.output[0].dims) == [19, -1, -1]
    prof = manifest["input"]["profile"]
    assert prof == {"min": [1, 3, 64, 128], "opt": [1, 3, 64, 128], "max": [1, 3, 128, 256]}
    params = _profile_params(config)
    assert params["trt_profile_min_shapes"] == "input:1x3x64x128"
    assert params["trt_profile_opt_shapes"] == "input:8x3x64x128"
    assert params["trt_profile_max_shapes"] == "input:8x3x128x256"
    assert params["precision_mode"] == "FP16"
    # a size other than the one the batch check used
    _same_per_frame(fast_scnn_dynamic_bundle, model_dir, (96, 160))
    assert "any H x W from 64x128 to 128x256" in (model_dir / "README.md").read_text()


class _FlattenSoftmax(nn.Module):
    """Logits through a reshape that names batch 1: a graph that cannot be batched by relaxing its input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):  # (1, 3, 64, 64) -> (1, 4, 8, 8)
        y = nn.functional.avg_pool2d(self.conv(x), 8)
        return torch.softmax(y.reshape(1, -1), 1).reshape(1, 4, 8, 8)


def test_graph_that_cannot_batch_stays_at_batch_one(tmp_path):
    torch.manual_seed(0)
    onnx_path = tmp_path / "flat.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_FlattenSoftmax().eval(), (torch.zeros(1, 3, 64, 64),), str(onnx_path),
                          input_names=["image"], output_names=["scores"], opset_version=17, dynamo=False)
    reason = check_batched(onnx_path, batched_graph(onnx_path), (64, 64))
    assert reason and "batch of 3" in reason

    bundle = tmp_path / "bundle"
    assert main(["export", "--onnx", str(onnx_path), "--num-classes", "4", "--input-size", "64x64",
                 "--out", str(bundle)]) == 0
    assert main(["triton", str(bundle), str(tmp_path / "repo"), "--name", "flat"]) == 0
    model_dir = tmp_path / "repo" / "flat"
    config = _config(model_dir)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3, 64, 64] and config.input[0].name == "image"
    assert list(config.output[0].dims) == [1, 4, 8, 8] and config.output[0].name == "scores"
    assert _profile_params(config)["trt_profile_max_shapes"] == "image:1x3x64x64"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    assert "Triton does not batch this model" in (model_dir / "README.md").read_text()


def test_engine_bundle_is_a_tensorrt_plan(fast_scnn_bundle, tmp_path):
    # No TensorRT here: the bundle's engine artifact is a stand-in file; what is checked is the configuration
    # derived from the manifest (batch 1 engine: no Triton batching, profile 0 on the GPU), not the engine.
    bundle = tmp_path / "bundle"
    shutil.copytree(fast_scnn_bundle, bundle)
    (bundle / "model.engine").write_bytes(b"engine bytes")
    from rtseg.files import sha256_file

    manifest = json.loads((bundle / "rtseg.json").read_text())
    manifest["artifacts"]["engine"] = {"file": "model.engine", "sha256": sha256_file(bundle / "model.engine")}
    (bundle / "rtseg.json").write_text(json.dumps(manifest))
    assert main(["triton", str(bundle), str(tmp_path / "repo")]) == 0
    config = _config(tmp_path / "repo" / "fast_scnn")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 0
    assert list(config.input[0].dims) == [1, 3, 64, 128] and list(config.output[0].dims) == [1, 19, 8, 16]
    [group] = config.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and list(group.profile) == ["0"]
    assert (tmp_path / "repo" / "fast_scnn" / "1" / "model.plan").read_bytes() == b"engine bytes"


def test_bad_input_is_one_line(fast_scnn_bundle, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["triton", str(fast_scnn_bundle), str(repo)]) == 0
    before = (repo / "fast_scnn" / "config.pbtxt").read_text()
    capsys.readouterr()
    cases = [([str(fast_scnn_bundle), str(repo)], "already exists; pass --force"),
             ([str(fast_scnn_bundle), str(repo), "--graph", "engine", "--force"], "has no engine artifact"),
             ([str(fast_scnn_bundle), str(repo), "--name", "a/b"], "model name 'a/b'"),
             ([str(fast_scnn_bundle), str(repo), "--max-batch", "0", "--name", "x"], "--max-batch 0"),
             ([str(tmp_path / "nothing"), str(repo)], "no bundle manifest")]
    for argv, message in cases:
        assert main(["triton", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtseg: error: ") and message in err and err.count("\n") == 1, err
    assert (repo / "fast_scnn" / "config.pbtxt").read_text() == before  # a failed run changed nothing
    assert sorted(p.name for p in repo.iterdir()) == ["fast_scnn"]

    tampered = tmp_path / "tampered"
    shutil.copytree(fast_scnn_bundle, tampered)
    with open(tampered / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["triton", str(tampered), str(repo), "--force"]) == 2
    assert "not the file the bundle was verified with" in capsys.readouterr().err
    assert main(["triton", str(fast_scnn_bundle), str(repo), "--force", "--max-batch", "2"]) == 0
    assert _config(repo / "fast_scnn").max_batch_size == 2
