"""Segmenter on a real (small, dynamic) Fast-SCNN bundle through ONNX Runtime's CPU provider and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.scenes import synthetic_scenes
from rtseg.runtime import InputSpec, load


def _frame(h, w, seed=0):
    return np.ascontiguousarray(synthetic_scenes(1, h, w, seed=seed)[0][..., ::-1])  # BGR


def test_labels_at_frame_size_and_stage_timings(small_bundle):
    with load(small_bundle) as seg:
        for h, w in ((120, 200), (97, 311), (480, 640)):
            r = seg.segment(_frame(h, w))
            assert r.labels.shape == (h, w) and r.labels.dtype == np.uint8
            assert r.labels.max() < seg.num_classes
            assert set(r.timings) == {"preprocess", "infer", "postprocess"}
            assert all(t > 0 for t in r.timings.values())


def test_same_labels_as_the_stages_done_by_hand(small_bundle):
    """segment() == the kernels and an ONNX Runtime session of the bundle's FP32 graph, called one by one."""
    import onnxruntime as ort

    from rtseg.kernels import preprocess, upsample_argmax

    frame = _frame(150, 260, seed=3)
    with load(small_bundle, device="cpu") as seg:
        res = seg.segment(frame, return_score=True)
        inp = seg.manifest["input"]
        x = preprocess(frame, res.input_size, inp["mean"], inp["std"], rgb=True, pixel_range=255.0)
        sess = ort.InferenceSession(str(small_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
        low = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        labels, score = upsample_argmax(low[0], (150, 260), align_corners=True, return_score=True)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_array_equal(res.score, score)


def test_dynamic_input_size_follows_the_frame(small_bundle):
    with load(small_bundle) as seg:
        assert seg.spec.dynamic and seg.spec.opt == (64, 128)
        assert seg.segment(_frame(64, 128)).input_size == (64, 128)
        assert seg.segment(_frame(720, 1280)).input_size == (64, 128)  # fits the opt size, aspect kept
        assert seg.segment(_frame(1080, 1080)).input_size == (64, 64)  # square stays square
        assert seg.segment(_frame(600, 4000)).input_size == (32, 128)  # clamped to the profile's min height
    with load(small_bundle, input_size=(96, 192)) as seg:
        assert seg.segment(_frame(720, 1280)).input_size == (96, 192)


def test_input_size_rules():
    spec = InputSpec((512, 1024), (256, 512), (1024, 2048), 32)
    assert spec.size_for((1080, 1920)) == (512, 896)
    assert spec.size_for((100, 100)) == (512, 512)
    h, w = spec.size_for((333, 517))
    assert h % 32 == 0 and w % 32 == 0 and 256 <= h <= 1024 and 512 <= w <= 2048
    assert InputSpec((512, 1024)).size_for((1080, 1920)) == (512, 1024)


def test_torch_backend_gives_the_same_labels(small_bundle):
    frame = _frame(200, 300, seed=5)
    with load(small_bundle, backend="onnxruntime") as ort_seg, load(small_bundle, backend="torch") as torch_seg:
        assert torch_seg.describe()["backend"] == "torch"
        a, b = ort_seg.segment(frame).labels, torch_seg.segment(frame).labels
    assert (a == b).mean() >= 0.9999


def test_batch_overlay_and_colorize(small_bundle):
    frames = [_frame(90, 160, seed=s) for s in range(3)]
    with load(small_bundle) as seg:
        results = seg.segment_batch(frames)
        for f, r in zip(frames, results):
            np.testing.assert_array_equal(r.labels, seg.segment(f).labels)
        colour = seg.colorize(results[0].labels)
        assert colour.shape == (90, 160, 3)
        np.testing.assert_array_equal(colour, seg.palette[results[0].labels][..., ::-1])  # BGR of the RGB palette
        shown = seg.overlay(frames[0], results[0].labels, alpha=1.0)
        np.testing.assert_array_equal(shown, colour)
        np.testing.assert_array_equal(seg.overlay(frames[0], results[0].labels, alpha=0.0), frames[0])


def test_describe_tells_the_provider_really_used(small_bundle):
    with load(small_bundle, device="cpu") as seg:
        d = seg.describe()
        assert d["backend"] == "onnxruntime" and d["device"] == "cpu"
        assert d["provider"] == "CPUExecutionProvider"
        assert d["provider"] in seg.runner.session.get_providers()
        assert d["graph"] == "model.onnx" and d["threads"] >= 1 and d["why"]


def test_runner_surface(small_bundle):
    from rtseg.runtime.onnxruntime import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(small_bundle / "model.onnx")
    x = np.zeros((1, 3, 64, 128), np.float32)
    with pytest.raises(RtsegError, match="not active"):
        runner.infer(x)
    with runner:
        out = runner.infer(x)
        assert out.shape[:2] == (1, 19) and runner.last_inference_time() > 0
    assert not runner.is_active


def test_replicas_give_the_same_labels_on_one_thread_each(small_bundle):
    frames = [_frame(120, 200, seed=s) for s in range(3)]
    with load(small_bundle, device="cpu", threads=2) as seg:
        copies = seg.replicas(2, 1)
        assert len(copies) == 2 and seg.replicas(2, 1) is copies  # made once
        assert copies[0].runner.session is not copies[1].runner.session is not seg.runner.session
        for copy in copies:
            d = copy.describe()
            assert (d["backend"], d["provider"], d["threads"], copy.threads) == ("onnxruntime", "CPUExecutionProvider",
                                                                                  1, 1)
            for f in frames:
                np.testing.assert_array_equal(copy.segment(f).labels, seg.segment(f).labels)
        assert seg.describe()["threads"] == 2
    assert not any(copy.runner.is_active for copy in copies)  # closed with the Segmenter
    with load(small_bundle, backend="torch") as torch_seg:
        assert torch_seg.replicas(2, 1) == []  # PyTorch offers no second runner
