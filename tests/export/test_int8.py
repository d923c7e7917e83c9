"""``rtseg export --precision int8``: the quantized graphs, their gate against the FP32 graph, and the bad inputs.

Real data throughout: the demo's trained Fast-SCNN on labelled frames of its street world (rtseg.demo.data), ONNX
Runtime's quantizer and sessions. The passing bundle is exported at the model's own 288x512; at 64x128 (far from
what it was trained on) its INT8 graph loses too much, which is the gate that cannot pass even with the fallback.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from rtseg.cli import main

from ..conftest import STREET_WEIGHTS

_MODEL = ["--model", "fast_scnn", "--weights", str(STREET_WEIGHTS), "--num-classes", "19"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtseg: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Eight labelled street frames at 288x512 (images/ and labels/ with the same stems)."""
    from rtseg.demo.data import labelled_frame

    d = tmp_path_factory.mktemp("labelled")
    (d / "images").mkdir()
    (d / "labels").mkdir()
    for i in range(8):
        rgb, labels = labelled_frame("test", i, (288, 512))
        cv2.imwrite(str(d / "images" / f"f{i}.png"), rgb[..., ::-1])
        cv2.imwrite(str(d / "labels" / f"f{i}.png"), labels)
    return d


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, labelled):
    out = tmp_path_factory.mktemp("int8") / "fast_scnn"
    code = main(["export", *_MODEL, "--input-size", "288x512", "--precision", "int8", "--calib",
                 str(labelled / "images"), "--calib-labels", str(labelled / "labels"), "--calib-frames", "5",
                 "--gate-frames", "3", "--int8-tensorrt", "--out", str(out)])
    assert code == 0
    return out


def test_int8_bundle_is_gated_fused_and_hashed(int8_bundle, capsys):
    from rtseg.bundle import check_artifact, open_bundle

    bundle = open_bundle(int8_bundle)
    m = bundle.manifest
    assert m["artifacts"]["onnx_int8"]["file"] == "model.int8.onnx"
    check_artifact(bundle, "onnx_int8")  # sha256 as recorded
    check_artifact(bundle, "onnx_int8_s8s8")
    report = m.verification["onnx_int8"]
    assert report["passed"] and report["agreement"] >= 0.985 and report["worst_frame"]["agreement"] >= 0.97
    frames = report["frames"]
    assert len(frames["calibration"]) == 5 and len(frames["gate"]) == 3
    assert not set(frames["calibration"]) & set(frames["gate"])  # the gate never sees a calibration frame
    assert abs(report["miou"]["drop_points"]) <= 0.5 and 0.3 < report["miou"]["fp32"] <= 1.0
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(int8_bundle / "model.onnx")).graph.node)
    assert report["graph"]["qlinearconv"] == convs and report["graph"]["fp32_conv"] == 0  # every conv fused
    assert "--precision int8" in m.rebuild_command
    # the TensorRT form: symmetric S8 activations (zero points 0, int8) as well as weights
    s8 = onnx.load(str(int8_bundle / "model.int8.s8s8.onnx"))
    zps = {i.name: i for i in s8.graph.initializer
           if i.name.endswith("zero_point") and i.data_type != onnx.TensorProto.INT32}  # (biases are int32)
    assert zps and all(z.data_type == onnx.TensorProto.INT8 and not onnx.numpy_helper.to_array(z).any()
                       for z in zps.values())
    capsys.readouterr()


def test_int8_rerun_reuses_the_step(int8_bundle, labelled, capsys):
    before = (int8_bundle / "model.int8.onnx").read_bytes()
    code = main(["export", *_MODEL, "--input-size", "288x512", "--precision", "int8", "--calib",
                 str(labelled / "images"), "--calib-labels", str(labelled / "labels"), "--calib-frames", "5",
                 "--gate-frames", "3", "--int8-tensorrt", "--out", str(int8_bundle)])
    out = capsys.readouterr().out
    assert code == 0 and "onnx_int8" in out and "reused" in out.split("onnx_int8 ", 1)[1].splitlines()[0]
    assert (int8_bundle / "model.int8.onnx").read_bytes() == before


def test_auto_on_the_cpu_runs_the_int8_graph(int8_bundle, labelled):
    from rtseg.runtime import load

    frame = cv2.imread(str(labelled / "images" / "f1.png"))
    with load(int8_bundle, device="cpu") as seg:
        d = seg.describe()
        int8 = seg.segment(frame).labels
    assert d["graph"] == "model.int8.onnx" and "INT8" in d["why"]
    with load(int8_bundle, backend="onnxruntime", device="cpu", precision="fp32") as seg:
        fp32 = seg.segment(frame).labels
    assert (int8 == fp32).mean() > 0.97


def test_the_int8_graph_is_gated_on_openvino_too_and_auto_follows_that_gate(int8_bundle, tmp_path):
    """auto runs the INT8 graph on OpenVINO, whose kernels are not ONNX Runtime's: the export judges it there as
    well, and a bundle whose OpenVINO verdict failed runs on ONNX Runtime INT8 instead."""
    import shutil

    from rtseg.runtime import load
    from rtseg.runtime.openvino import openvino_missing_reason

    if openvino_missing_reason():
        pytest.skip(f"OpenVINO is not usable here: {openvino_missing_reason()}")
    report = json.loads((int8_bundle / "rtseg.json").read_text())["verification"]["onnx_int8_openvino"]
    assert report["passed"] and report["runner"] == "openvino" and report["agreement"] >= 0.985
    assert len(report["per_frame"]) == 3 and abs(report["miou"]["drop_points"]) <= 0.5
    with load(int8_bundle, device="cpu") as seg:
        assert seg.describe()["backend"] == "openvino" and "agreement there" in seg.describe()["why"]
    failed = tmp_path / "failed"
    shutil.copytree(int8_bundle, failed)
    doc = json.loads((failed / "rtseg.json").read_text())
    doc["verification"]["onnx_int8_openvino"].update(passed=False, agreement=0.5)
    (failed / "rtseg.json").write_text(json.dumps(doc))
    with load(failed, device="cpu") as seg:
        d = seg.describe()
    assert d["backend"] == "onnxruntime" and d["graph"] == "model.int8.onnx", d
    assert "failed its gate there (50.00%" in d["why"], d["why"]


def test_keep_fp32_leaves_the_named_conv_in_fp32(tmp_path):
    from rtseg.export.quantize import fused_form, quantize

    src = tmp_path / "model.onnx"
    code = main(["export", *_MODEL, "--input-size", "64x128", "--precision", "fp32", "--out", str(tmp_path)])
    assert code == 0
    last = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"][-1]
    from rtseg.scenes import synthetic_scenes

    frames = (synthetic_scenes(2, 64, 128).transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    info = quantize(src, tmp_path / "q.onnx", frames, "input", "u8s8", tmp_path / "ranges.json", [last])
    assert info["keep_fp32"] == [last]
    assert fused_form(tmp_path / "q.onnx")["fp32_conv"] == 1


def test_a_gate_that_cannot_pass_names_the_layers_it_returned(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["export", *_MODEL, "--input-size", "64x128", "--precision", "int8", "--calib-frames", "3",
                 "--gate-frames", "2", "--gate-int8", "0.9999", "--int8-fallback", "2", "--out", str(out)])
    assert code == 1
    assert not (out / "rtseg.json").exists()
    report = json.loads((out / "rtseg.failed.json").read_text())["verification"]["onnx_int8"]
    assert not report["passed"] and len(report["fallback_returned"]) == 2
    assert report["fallback_returned"][0] in report["failed"][-1]  # the report names the layers
    assert "FAILED" in capsys.readouterr().out


def test_no_calibration_frames(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["export", *_MODEL, "--input-size", "64x128", "--precision", "int8", "--calib",
                 str(tmp_path / "empty"), "--out", str(tmp_path / "b")])
    assert code != 0 and "no images" in _error_line(capsys)
    assert not (tmp_path / "b").exists()


def test_a_one_frame_video(tmp_path, capsys):
    video = tmp_path / "one.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 64))
    w.write(np.full((64, 128, 3), 90, np.uint8))
    w.release()
    code = main(["export", *_MODEL, "--input-size", "64x128", "--precision", "int8", "--calib", str(video),
                 "--out", str(tmp_path / "b")])
    line = _error_line(capsys)
    assert code != 0 and "1 frame" in line and "at least 2" in line
    assert not (tmp_path / "b").exists()


def test_frames_of_another_size_family(tmp_path, capsys):
    (tmp_path / "portrait").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "portrait" / f"{i}.png"), np.full((256, 128, 3), 40 * i, np.uint8))
    code = main(["export", *_MODEL, "--input-size", "64x128", "--precision", "int8", "--calib",
                 str(tmp_path / "portrait"), "--calib-frames", "2", "--gate-frames", "1", "--out",
                 str(tmp_path / "b")])
    line = _error_line(capsys)
    assert code != 0 and "256x128" in line and "size family" in line
    assert not (tmp_path / "b").exists()


def test_labels_missing_for_a_frame(tmp_path, labelled, capsys):
    code = main(["export", *_MODEL, "--input-size", "288x512", "--precision", "int8", "--calib",
                 str(labelled / "images"), "--calib-labels", str(tmp_path), "--out", str(tmp_path / "b")])
    assert code != 0 and "no label image" in _error_line(capsys)


def test_channel_attention_gates_stay_fp32(tmp_path):
    """A global pool -> Conv -> Sigmoid gate scaling a feature map (BiSeNetV1's ARM) is left FP32: quantized,
    OpenVINO ran its Sigmoid once per element of the feature map; the feature convs are still fused."""
    from onnx import TensorProto, helper, numpy_helper

    from rtseg.export.quantize import attention_gates, fused_form, quantize

    rng = np.random.default_rng(0)
    w = {n: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
         for n, s in (("w0", (8, 3, 3, 3)), ("wa", (8, 8, 1, 1)), ("w1", (4, 8, 1, 1)))}
    nodes = [helper.make_node("Conv", ["input", "w0"], ["f"], name="feat", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f"], ["fr"], name="relu"),
             helper.make_node("ReduceMean", ["fr"], ["p"], name="pool", axes=[2, 3], keepdims=1),
             helper.make_node("Conv", ["p", "wa"], ["a"], name="atten"),
             helper.make_node("Sigmoid", ["a"], ["s"], name="gate"),
             helper.make_node("Mul", ["fr", "s"], ["m"], name="scale"),
             helper.make_node("Conv", ["m", "w1"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "arm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 16, 16])],
                              list(w.values()))
    src = tmp_path / "arm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    assert attention_gates(onnx.load(str(src))) == ["atten", "gate"]
    frames = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    info = quantize(src, tmp_path / "q.onnx", frames, "input", "u8s8", tmp_path / "ranges.json")
    assert info["attention_fp32"] == ["atten", "gate"]
    form = fused_form(tmp_path / "q.onnx")
    assert form["attention_fp32_conv"] == 1 and form["fp32_conv"] == 1 and form["qlinearconv"] == 2
