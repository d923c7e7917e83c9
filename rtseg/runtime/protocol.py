"""The segmenter surface: what the video pipeline, the multi-stream batcher, serve and bench may call.

Three classes implement it: :class:`rtseg.runtime.Segmenter` (a bundle on a local backend),
:class:`rtseg.video.streams.SharedSegmenter` (one segmenter shared by several streams, frames batched) and
:class:`rtseg.serve.client.RemoteSegmenter` (an ``rtseg serve`` service over HTTP). Callers ask these attributes
and methods directly: nothing is probed with ``getattr``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SegmenterProtocol(Protocol):
    num_classes: int
    class_names: list[str]
    palette: np.ndarray  # (classes, 3) uint8 RGB
    trained_classes: list[int]  # the class ids the model was trained on (legends list those); every class if unknown
    untrained: bool  # exported without weights: its predictions mean nothing (the run says so)

    @property
    def thread_safe(self) -> bool:
        """True when several threads may call :meth:`segment` at once (frames are queued or batched inside)."""

    @property
    def on_gpu(self) -> bool:
        """True when frames are computed on a GPU (the overlay is then made there, with the labels)."""

    @property
    def cpu_threads(self) -> int | None:
        """The CPU threads one frame is split over, for a local CPU backend; None otherwise."""

    def segment(self, frame: np.ndarray, return_score: bool = False, overlay: float | None = None) -> Any:
        """Labels (a :class:`~rtseg.runtime.SegmentResult`) for one BGR uint8 frame, at the frame's size."""

    def segment_batch(self, frames: list[np.ndarray], return_score: bool = False) -> list:
        """Results for several frames, in order."""

    def overlay(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
                out: np.ndarray | None = None) -> np.ndarray:
        """The frame with the class colours blended in (BGR uint8)."""

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) labels -> (H, W, 3) BGR colour mask."""

    def describe(self) -> dict:
        """Which backend, device, provider and graph run the frames, and why."""

    def replicas(self, count: int, threads: int) -> list:
        """``count`` independent copies computing with ``threads`` CPU threads each, to run frames side by side;
        empty where none can be offered (GPU, PyTorch, shared or remote segmenters)."""

    def close(self) -> None: ...
