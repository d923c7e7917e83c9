"""The GPU-resident path (run where a GPU is lent; skipped with a reason elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.scenes import synthetic_scenes
from rtseg.runtime import load

pytestmark = pytest.mark.gpu


def _frame(h, w, seed=0):
    return np.ascontiguousarray(synthetic_scenes(1, h, w, seed=seed)[0][..., ::-1])


def _gpu_backends():
    import onnxruntime

    backends = ["torch"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        backends.append("onnxruntime")
    return backends


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_every_gpu_backend_gives_the_cpu_labels(small_bundle, precision):
    frames = [_frame(h, w, seed=h) for h, w in ((720, 1280), (333, 517))]
    with load(small_bundle, device="cpu") as cpu:
        expected = [cpu.segment(f).labels for f in frames]
    for backend in _gpu_backends():
        with load(small_bundle, backend=backend, device="cuda", precision=precision if backend != "torch" else None) \
                as seg:
            for f, want in zip(frames, expected):
                r = seg.segment(f, overlay=0.5)
                assert r.labels.shape == want.shape and r.labels.dtype == np.uint8
                assert (r.labels == want).mean() >= 0.999, backend
                np.testing.assert_array_equal(r.overlay, seg.overlay(f, r.labels, 0.5))
                assert set(r.timings) == {"upload", "preprocess", "infer", "postprocess", "download"}


def test_describe_tells_the_truth_about_the_provider(small_bundle):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    with load(small_bundle, device="cuda") as seg:
        d = seg.describe()
        assert d["provider"] == "CUDAExecutionProvider"
        assert d["provider"] in seg.runner.session.get_providers()
        assert d["graph"] == "model.fp16.onnx"


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_no_host_synchronisation_between_stages(small_bundle, backend):
    """Stream ordering, not a timer: with the stream held busy by a long kernel, enqueueing a whole frame returns
    before any of it ran (a host sync between stages would have waited for the busy kernel), and the labels that
    arrive afterwards are still right."""
    import torch

    if backend not in _gpu_backends():
        pytest.skip(f"{backend} has no CUDA support here")
    frame = _frame(360, 640, seed=9)
    with load(small_bundle, device="cpu") as cpu:
        want = cpu.segment(frame).labels
    with load(small_bundle, backend=backend, device="cuda") as seg:
        seg.segment(frame)  # warm: buffers, kernels compiled
        from rtseg.runtime.gpu import ResidentPath

        path = ResidentPath(seg)
        with torch.cuda.stream(path.stream):
            torch.cuda._sleep(2_000_000_000)  # about a second of GPU time on the segmenter's stream
        pending = path.enqueue(frame)
        assert not pending.done(), "a stage waited on the host"
        labels, timings, _ = pending.wait()
        assert (labels == want).mean() >= 0.999


@pytest.mark.tensorrt
def test_engine_runs_at_two_profile_sizes_and_matches_fp16(tmp_path):
    from rtseg.export.pipeline import ExportOptions, run_export

    out = tmp_path / "b"
    assert run_export(ExportOptions(out=out, model="fast_scnn", num_classes=19, input_size=(64, 128),
                                    dynamic=((32, 64), (128, 256)), calib_frames=2), say=lambda line: None).passed
    with load(out, device="cuda") as auto:
        assert auto.describe()["backend"] == "tensorrt"
    for size in ((64, 128), (128, 256)):
        with load(out, backend="tensorrt", input_size=size) as engine, \
                load(out, backend="onnxruntime", device="cpu", precision="fp16", input_size=size) as fp16:
            f = _frame(240, 480, seed=size[0])
            assert (engine.segment(f).labels == fp16.segment(f).labels).mean() >= 0.995
