"""The runtime: a bundle in, labels out, through TensorRT, ONNX Runtime or PyTorch behind one interface.

    from rtseg.runtime import load
    with load("bundles/fast_scnn") as seg:          # backend="auto": TensorRT -> ORT CUDA -> ORT CPU
        print(seg.describe())                       # which backend/device/provider, and why
        result = seg.segment(frame)                 # BGR uint8 (H, W, 3) -> result.labels (H, W) uint8
        shown = seg.overlay(frame, result.labels)

Layers: :mod:`rtseg.bundle` (the format: manifest and artifact checks), :mod:`.select` (which backend and graph),
:mod:`.base` (the runner surface) with one module per backend, and :mod:`.segmenter` (frames in, labels out).
"""

from __future__ import annotations

import os

from .base import Runner as Runner
from ..bundle import InputSpec as InputSpec
from .segmenter import Segmenter as Segmenter
from .segmenter import SegmentResult as SegmentResult


def load(bundle: str | os.PathLike, backend: str = "auto", device: str | None = None, *,
         precision: str | None = None, input_size: tuple[int, int] | None = None, weights=None,
         threads: int | None = None, scales=None, flip: bool = False) -> Segmenter:
    """Open a bundle made by ``rtseg export`` and make it ready to segment frames.

    backend: "auto" (TensorRT engine -> ONNX Runtime CUDA -> the CPU's fastest gated runner, docs/precision.md),
    "tensorrt", "onnxruntime", "openvino" (CPU) or "torch". device: None (choose), "cpu", "cuda" or "cuda:N".
    precision: "fp16", "fp32", "int8" (the bundle's INT8 graph) or "bf16" (OpenVINO); default FP16 on a GPU, on the
    CPU the gated INT8 graph where the bundle has one, else FP32. input_size: fix the network input size of a dynamic bundle (default: chosen
    per frame). weights: the checkpoint for the torch backend when the one recorded in the bundle is elsewhere.
    threads: ONNX Runtime CPU threads (default: the cores this process may use). scales, flip: multi-scale and
    flip inference, e.g. ``scales=(0.75, 1.0, 1.25), flip=True``: each frame runs at every scale of its input size
    (a dynamic bundle; a fixed-size one takes scale 1 only) and, with flip, mirrored too; the passes' logits are
    averaged before one upsample+argmax (:mod:`rtseg.runtime.multiscale`).
    """
    from ..bundle import open_bundle
    from .multiscale import read_scales
    from .select import choose_runner

    scales = read_scales(scales, "scales") if scales is not None else None
    b = open_bundle(bundle)
    runner, why = choose_runner(b, backend, device, precision, weights, threads)
    seg = Segmenter(b, runner, why, input_size, scales, flip)
    if runner.on_gpu and runner.backend == "onnxruntime" and runner.stream is None:
        from .gpu import new_stream

        runner.stream_owner = new_stream(runner.device)  # ORT computes on it (user_compute_stream)
        runner.stream = int(runner.stream_owner.cuda_stream)
    runner.activate()
    return seg


__all__ = ["InputSpec", "Runner", "SegmentResult", "Segmenter", "load"]
