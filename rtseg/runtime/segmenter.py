"""``Segmenter``: a BGR frame of any size in, class labels at the frame's size out.

One pass per stage: the ``preprocess`` kernel resizes and normalises straight into the runner's input buffer, the
runner computes the graph's output, and ``upsample_argmax`` goes from the low-resolution logits straight to the
frame's size, so neither full-resolution float logits nor a second resize of the labels ever exist. (A bundle whose
graph ends in labels is the one exception: its labels are resized to the frame by nearest neighbour.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..errors import RtsegError
from .base import Runner


@dataclass
class SegmentResult:
    labels: np.ndarray  # (H, W) uint8 (int32 above 255 classes), at the frame's size
    timings: dict[str, float] = field(default_factory=dict)  # seconds: preprocess, infer, postprocess
    score: np.ndarray | None = None  # (H, W) float32 winning interpolated logit, when asked for
    input_size: tuple[int, int] | None = None  # the network input size this frame ran at
    overlay: np.ndarray | None = None  # (H, W, 3) BGR frame with the class colours blended in, when asked for


def check_frame(frame: Any) -> np.ndarray:
    """A frame must be a BGR uint8 (H, W, 3) array; anything else gets a line saying how to convert it."""
    if not isinstance(frame, np.ndarray):
        raise RtsegError(f"a frame must be a NumPy uint8 (H, W, 3) BGR image, got {type(frame).__name__}")
    if frame.size == 0:
        raise RtsegError(f"the frame is empty (shape {frame.shape}); the source gave no image")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        raise RtsegError("the frame is greyscale; convert it with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)")
    if frame.ndim == 3 and frame.shape[2] == 4:
        raise RtsegError("the frame has 4 channels (BGRA); drop alpha with cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise RtsegError(f"a frame must be (H, W, 3) BGR, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        hint = " (scale floats in [0, 1] by 255 first)" if frame.dtype.kind == "f" else ""
        raise RtsegError(f"a frame must be uint8, got {frame.dtype}; convert with frame.astype(np.uint8){hint}")
    return frame


class Segmenter:
    """A loaded bundle on one backend. Made by :func:`rtseg.runtime.load`; implements
    :class:`~rtseg.runtime.protocol.SegmenterProtocol`."""

    thread_safe = False  # one frame at a time: the input buffers are reused

    def __init__(self, bundle: Bundle, runner: Runner, why: str, input_size: tuple[int, int] | None = None,
                 scales=None, flip: bool = False):
        from ..kernels import label_dtype

        self.bundle, self.manifest = Path(bundle.root), bundle.manifest
        self.runner, self.why = runner, why
        self._opened = bundle
        #: threads the CPU kernels (preprocess, upsample+argmax, overlay) split a frame over; None: the cores
        self.threads: int | None = None
        self._replicas: dict[tuple[int, int], list[Segmenter]] = {}
        m = self.manifest
        self.num_classes = m.num_classes
        self.class_names = list(m.model.class_names)
        self.trained_classes, self.untrained = m.trained_classes, m.untrained
        self.palette = np.asarray(m.model.palette, np.uint8).reshape(-1, 3)  # RGB
        self._palette_bgr = np.ascontiguousarray(self.palette[:, ::-1])
        self.spec = m.inputs
        if input_size is not None:
            self.spec.check(tuple(input_size))
        self.fixed_size = tuple(input_size) if input_size is not None else None
        pre = m.preprocessing
        self.rgb = pre.channel_order == "RGB"
        self.mean, self.std = tuple(pre.mean), tuple(pre.std)
        self.pixel_range = 255.0 / pre.value_scale
        self.output_kind = m.output_kind
        self.align_corners = bool(m.upsample.align_corners) if m.upsample else False
        self.label_dtype = label_dtype(self.num_classes)
        self._inputs: dict[tuple[tuple[int, int], int], np.ndarray] = {}  # (size, batch) -> input buffer
        self._gpu = None  # the resident path's buffers, made on the first GPU frame
        from .multiscale import MultiScale

        ms = MultiScale(self, scales, flip)
        #: the passes of multi-scale/flip inference (:mod:`.multiscale`); None for one pass per frame
        self.multiscale: MultiScale | None = ms if ms.active else None

    # -- the surface --------------------------------------------------------------------------------------
    @property
    def on_gpu(self) -> bool:
        return self.runner.on_gpu

    @property
    def cpu_threads(self) -> int | None:
        return None if self.runner.on_gpu else self.runner.threads

    def describe(self) -> dict:
        """Which backend, device, provider and graph run this bundle, and why that one was chosen."""
        info = {**self.runner.describe(), "why": self.why, "bundle": str(self.bundle),
                "model": self.manifest.model.name, "output": self.output_kind}
        if self.multiscale is not None:  # e.g. {"scales": [0.75, 1.0, 1.25], "flip": True, "passes": 6}
            info["multiscale"] = self.multiscale.describe()
        return info

    def input_size_for(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.fixed_size or self.spec.size_for(frame_hw)

    def segment(self, frame: np.ndarray, return_score: bool = False, overlay: float | None = None) -> SegmentResult:
        """Labels for one BGR uint8 frame, at the frame's size, with per-stage timings (seconds).

        ``overlay=alpha`` also returns the frame with the class colours blended in (on a GPU, made there too).
        """
        frame = check_frame(frame)
        if self.multiscale is not None:
            return self.multiscale.segment(frame, return_score, overlay)
        if self.runner.on_gpu:
            return self._segment_gpu(frame, return_score, overlay)
        t0 = time.perf_counter()
        x = self._preprocess(frame)  # (1, 3, h, w)
        t1 = time.perf_counter()
        out = self.runner.infer(x)
        t2 = time.perf_counter()
        labels, score = self._postprocess(out[0], frame.shape[:2], return_score)
        shown = self.overlay(frame, labels, overlay) if overlay is not None else None
        t3 = time.perf_counter()
        return SegmentResult(labels, {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": t3 - t2}, score,
                             tuple(x.shape[2:]), shown)

    def _segment_gpu(self, frame: np.ndarray, return_score: bool, alpha: float | None) -> SegmentResult:
        if return_score:
            raise RtsegError("return_score is not available on the GPU path yet; use device='cpu' for scores")
        if self._gpu is None:
            from .gpu import ResidentPath

            self._gpu = ResidentPath(self)
        labels, timings, shown = self._gpu.enqueue(frame, alpha).wait()
        return SegmentResult(labels, timings, None, self.input_size_for(frame.shape[:2]), shown)

    def segment_batch(self, frames: list[np.ndarray], return_score: bool = False) -> list[SegmentResult]:
        """Several frames as one inference where the graph has a batch axis (``rtseg export --max-batch N``, or
        PyTorch), one call per frame where it takes batch 1; labels equal to :meth:`segment`'s (see
        :mod:`rtseg.runtime.batch`)."""
        if self.multiscale is not None:  # several passes per frame: one frame at a time
            return [self.segment(f, return_score) for f in frames]
        from .batch import segment_batch

        return segment_batch(self, frames, return_score)

    def overlay(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, out: np.ndarray | None = None):
        """The frame with the class colours blended in (BGR uint8, the frame's size)."""
        from ..kernels import overlay

        return overlay(check_frame(frame), labels, self._palette_bgr, alpha, out=out, threads=self.threads)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) labels -> (H, W, 3) BGR colour mask."""
        from ..kernels import colorize

        return colorize(labels, self._palette_bgr, threads=self.threads)

    def replicas(self, count: int, threads: int) -> list[Segmenter]:
        """``count`` Segmenters of this bundle, on this backend and device, each computing with ``threads`` CPU
        threads (model and kernels), to run frames side by side: one frame on one thread costs less CPU time than
        one frame split over two. They give the labels this one gives. Empty where the backend has no second runner
        to offer (GPU, PyTorch). Made on first use, closed with this Segmenter."""
        key = (count, threads)
        if key not in self._replicas:
            made: list[Segmenter] = []
            for _ in range(count):
                runner = None if self.runner.on_gpu else self.runner.replica(threads)
                if runner is None:
                    break
                ms = self.multiscale
                copy = Segmenter(self._opened, runner, self.why, self.fixed_size, ms and ms.scales, ms and ms.flip)
                copy.threads = threads
                runner.activate()
                made.append(copy)
            self._replicas[key] = made
        return self._replicas[key]

    def close(self) -> None:
        for copies in self._replicas.values():
            for copy in copies:
                copy.close()
        self._replicas.clear()
        if self._gpu is not None:
            self._gpu.close()
        self.runner.deactivate()
        self._inputs.clear()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stages -------------------------------------------------------------------------------------------
    def input_buffer(self, size: tuple[int, int], count: int = 1) -> np.ndarray:
        """The (count, 3, H, W) graph input for this size: made once (size checked), reused frame after frame."""
        buf = self._inputs.get((size, count))
        if buf is None:
            self.spec.check(size)
            buf = self._inputs[(size, count)] = np.empty((count, 3, *size), self.runner.input_dtype)
        return buf

    def _preprocess(self, frame: np.ndarray, size: tuple[int, int] | None = None, out: np.ndarray | None = None):
        from ..kernels import preprocess

        size = size or self.input_size_for(frame.shape[:2])
        out = self.input_buffer(size) if out is None else out
        return preprocess(frame, size, self.mean, self.std, rgb=self.rgb, pixel_range=self.pixel_range,
                          dtype=self.runner.input_dtype, out=out, threads=self.threads)

    def _postprocess(self, out: np.ndarray, frame_hw: tuple[int, int], return_score: bool):
        from ..kernels import upsample_argmax

        if self.output_kind == "labels":
            labels = np.asarray(out)
            if labels.shape != tuple(frame_hw):
                import cv2

                labels = cv2.resize(labels.astype(np.int32), frame_hw[::-1], interpolation=cv2.INTER_NEAREST)
            return labels.astype(self.label_dtype, copy=False), None
        if out.shape[0] != self.num_classes:
            raise RtsegError(f"the graph gave {out.shape[0]} channels, the manifest says {self.num_classes} classes;"
                             f" the bundle is inconsistent: re-export it")
        res = upsample_argmax(out, frame_hw, self.align_corners, return_score=return_score, threads=self.threads)
        return res if return_score else (res, None)
