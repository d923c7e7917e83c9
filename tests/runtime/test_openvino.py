"""The OpenVINO runner: real OpenVINO on the session's small Fast-SCNN bundle and on an INT8 graph quantized here.

FP32 with its precision hint set (OpenVINO would otherwise run BF16 on a BF16 CPU without a word), BF16 where the
CPU has it, the INT8 graph; its Runner surface and describe(); OpenVINO missing; a graph it cannot read.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rtseg.errors import RtsegError

from ..conftest import REPO, street_bgr

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")


def _input(bundle, n=2):
    from rtseg.bundle import normalize, read_manifest

    frames = street_bgr(n, 64, 128)[..., ::-1]
    return normalize(np.ascontiguousarray(frames), read_manifest(bundle).preprocessing)


def _ort(path, x):
    from rtseg.runtime.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, "cpu", threads=1) as r:
        return np.concatenate([r.infer(x[i:i + 1]) for i in range(len(x))])


def test_fp32_is_fp32_and_matches_onnxruntime(small_bundle):
    from rtseg.runtime.openvino import OpenVinoRunner

    x = _input(small_bundle)
    with OpenVinoRunner(small_bundle / "model.onnx", "fp32", threads=1) as r:
        out = np.concatenate([r.infer(x[i:i + 1]) for i in range(len(x))])
        d = r.describe()
    assert d["backend"] == "openvino" and d["inference_precision"] == "f32" and d["threads"] == 1
    ref = _ort(small_bundle / "model.onnx", x)
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_bf16_runs_bf16_where_the_cpu_has_it(small_bundle):
    from rtseg.runtime.openvino import OpenVinoRunner, cpu_capabilities

    runner = OpenVinoRunner(small_bundle / "model.onnx", "bf16", threads=1)
    if "BF16" not in cpu_capabilities():
        with pytest.raises(RtsegError, match="no BF16"):
            runner.activate()
        return
    x = _input(small_bundle)
    with runner:
        out = runner.infer(x[:1])
        assert runner.describe()["inference_precision"] == "bf16"
    ref = _ort(small_bundle / "model.onnx", x[:1])
    assert (out.argmax(1) == ref.argmax(1)).mean() > 0.9 and not np.array_equal(out, ref)


def test_int8_graph_and_the_load_surface(small_bundle, tmp_path):
    from rtseg.export.quantize import quantize
    from rtseg.runtime.openvino import OpenVinoRunner

    x = _input(small_bundle, 3)
    q = tmp_path / "model.int8.onnx"
    quantize(small_bundle / "model.onnx", q, x, "input", "u8s8", tmp_path / "ranges.json")
    with OpenVinoRunner(q, "int8", threads=1) as r:
        out = r.infer(x[:1])
        assert r.describe()["graph"] == "model.int8.onnx"
    assert out.shape == _ort(q, x[:1]).shape
    # the input's U8 zero point 128 is read as S8 zero point 0, the same scale (the same values, q - 128)
    import onnx
    from onnx import numpy_helper

    from rtseg.runtime.openvino import _signed_input

    def zp_scale(path):
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        return inits["input_zero_point"], inits["input_scale"]

    (tmp_path / "ov").mkdir()
    (zp, scale), (zp8, scale8) = zp_scale(q), zp_scale(_signed_input(q, tmp_path / "ov"))
    assert zp.dtype == np.uint8 and zp == 128 and zp8.dtype == np.int8 and zp8 == 0 and scale8 == scale
    assert (out.argmax(1) == _ort(q, x[:1]).argmax(1)).mean() > 0.95
    from rtseg.runtime import load

    with load(small_bundle, backend="openvino", precision="fp32") as seg:
        d = seg.describe()
        labels = seg.segment(street_bgr(1, 64, 128)[0]).labels
    assert d["backend"] == "openvino" and d["inference_precision"] == "f32" and labels.shape == (64, 128)
    with pytest.raises(RtsegError, match="no INT8 graph"):
        load(small_bundle, backend="openvino", precision="int8")
    with pytest.raises(RtsegError, match="CPU only"):
        load(small_bundle, backend="openvino", device="cuda")


def test_a_graph_it_cannot_read(tmp_path):
    from rtseg.runtime.openvino import OpenVinoRunner

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all" * 50)
    with pytest.raises(RtsegError, match="OpenVINO cannot read or compile") as exc:
        OpenVinoRunner(bad).activate()
    assert "\n" not in str(exc.value)


def test_openvino_missing_is_one_line(small_bundle):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["openvino"] = None  # as if the extra were not installed
        from rtseg.cli import main
        sys.exit(main(["info", {str(small_bundle)!r}, "--backend", "openvino"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "pip install 'rtseg[openvino]'" in proc.stdout + proc.stderr


def test_bf16_bundle_is_gated_and_auto_runs_it(tmp_path, capsys):
    from rtseg.cli import main
    from rtseg.runtime import load
    from rtseg.runtime.openvino import cpu_capabilities

    from ..conftest import STREET_WEIGHTS

    out = tmp_path / "bf16"
    code = main(["export", "--model", "fast_scnn", "--weights", str(STREET_WEIGHTS), "--num-classes", "19",
                 "--input-size", "64x128", "--precision", "bf16", "--calib-frames", "2", "--gate-frames", "2",
                 "--out", str(out)])
    if "BF16" not in cpu_capabilities():
        assert code != 0 and "no BF16" in capsys.readouterr().err
        return
    assert code == 0
    from rtseg.bundle import read_manifest

    report = read_manifest(out).verification["openvino_bf16"]
    assert report["passed"] and not set(report["frames"]["calibration"]) & set(report["frames"]["gate"])
    with load(out, device="cpu") as seg:
        d = seg.describe()
    assert d["backend"] == "openvino" and d["inference_precision"] == "bf16" and "BF16" in d["why"]
