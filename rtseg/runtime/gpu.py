"""The GPU-resident path: a frame goes up once, and only uint8 labels (or the overlaid frame) come back.

Per frame, on the runner's one CUDA stream and with no host synchronisation in between:
copy the frame into pinned host memory -> upload -> ``preprocess`` kernel into the runner's input buffer -> runner
(TensorRT, ONNX Runtime CUDA with IO binding, or PyTorch CUDA) -> ``upsample_argmax`` kernel to the frame's size
(-> ``overlay`` kernel) -> download into pinned memory; then one wait on an event. Stage times are CUDA event
intervals, so they measure the GPU's work rather than how long the host took to enqueue it.

Buffers (pinned and device) are allocated per frame and input size, once, and reused. Device memory, pinned
memory, events and stream wrapping come from PyTorch's CUDA allocator, which every GPU set-up of rtseg has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RtsegError, missing_dependency


def _torch():
    try:
        import torch
    except ModuleNotFoundError:
        raise missing_dependency("torch", "gpu") from None
    if not torch.cuda.is_available():
        raise RtsegError("the GPU path needs PyTorch with CUDA (pip install torch with a CUDA build)")
    return torch


@dataclass
class Pending:
    """A frame in flight: :meth:`wait` blocks on its last event and returns (labels, timings, overlay or None)."""

    path: ResidentPath
    events: list
    labels_host: Any
    overlay_host: Any

    def done(self) -> bool:
        return bool(self.events[-1].query())

    def wait(self) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
        self.events[-1].synchronize()
        e = self.events
        names = ("upload", "preprocess", "infer", "postprocess", "download")
        timings = {n: e[i].elapsed_time(e[i + 1]) / 1e3 for i, n in enumerate(names)}
        labels = self.labels_host.numpy().copy()
        shown = self.overlay_host.numpy().copy() if self.overlay_host is not None else None
        return labels, timings, shown


class ResidentPath:
    """Owns the buffers of the resident path for one Segmenter."""

    def __init__(self, seg):
        torch = _torch()
        self.seg, self.torch = seg, torch
        runner = seg.runner
        self.device = torch.device(runner.device)
        self.stream = torch.cuda.ExternalStream(int(runner.stream), device=self.device)
        self._frames: dict[tuple, tuple] = {}
        self._inputs: dict[tuple, Any] = {}
        self._palette = seg._palette_bgr

    def _frame_buffers(self, shape: tuple[int, int, int], label_dtype: np.dtype, with_overlay: bool):
        key = (shape, with_overlay)
        bufs = self._frames.get(key)
        if bufs is None:
            torch = self.torch
            lt = torch.uint8 if label_dtype == np.uint8 else torch.int32
            pinned_frame = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            dev_frame = torch.empty(shape, dtype=torch.uint8, device=self.device)
            dev_labels = torch.empty(shape[:2], dtype=lt, device=self.device)
            host_labels = torch.empty(shape[:2], dtype=lt, pin_memory=True)
            dev_shown = torch.empty(shape, dtype=torch.uint8, device=self.device) if with_overlay else None
            host_shown = torch.empty(shape, dtype=torch.uint8, pin_memory=True) if with_overlay else None
            bufs = self._frames[key] = (pinned_frame, dev_frame, dev_labels, host_labels, dev_shown, host_shown)
        return bufs

    def _input_buffer(self, size: tuple[int, int]):
        buf = self._inputs.get(size)
        if buf is None:
            torch = self.torch
            dt = torch.float16 if self.seg.runner.input_dtype == np.float16 else torch.float32
            buf = self._inputs[size] = torch.empty((1, 3, *size), dtype=dt, device=self.device)
        return buf

    def enqueue(self, frame: np.ndarray, alpha: float | None = None) -> Pending:
        """Queue one frame's whole path on the stream and return at once. The buffers are per frame size, so wait
        for a Pending before enqueueing another frame of the same size."""
        from ..kernels import overlay, preprocess, upsample_argmax

        torch, seg = self.torch, self.seg
        size = seg.input_size_for(frame.shape[:2])
        seg.spec.check(size)
        pinned, dev_frame, dev_labels, host_labels, dev_shown, host_shown = self._frame_buffers(
            frame.shape, seg.label_dtype, alpha is not None)
        x = self._input_buffer(size)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
        pinned.numpy()[...] = frame  # the one host copy, into page-locked memory
        s = self.stream
        with torch.cuda.stream(s):
            events[0].record(s)
            dev_frame.copy_(pinned, non_blocking=True)
            events[1].record(s)
            preprocess(dev_frame, size, seg.mean, seg.std, rgb=seg.rgb, pixel_range=seg.pixel_range,
                       dtype=seg.runner.input_dtype, out=x, stream=s.cuda_stream)
            events[2].record(s)
            out = seg.runner.infer(x)  # enqueued on the same stream
            events[3].record(s)
            if seg.output_kind == "labels":
                raise RtsegError("the GPU path needs a logits bundle; re-export with --head logits")
            upsample_argmax(_first(out), frame.shape[:2], seg.align_corners, out=dev_labels, stream=s.cuda_stream)
            if alpha is not None:
                overlay(dev_frame, dev_labels, self._palette, alpha, out=dev_shown, stream=s.cuda_stream)
            events[4].record(s)
            host_labels.copy_(dev_labels, non_blocking=True)
            if alpha is not None:
                host_shown.copy_(dev_shown, non_blocking=True)
            events[5].record(s)
        return Pending(self, events, host_labels, host_shown)

    def close(self) -> None:
        self._frames.clear()
        self._inputs.clear()


def new_stream(device: str):
    """A CUDA stream (a torch.cuda.Stream; keep the object alive as long as its handle is used)."""
    torch = _torch()
    return torch.cuda.Stream(device=torch.device(device))


def _first(out: Any) -> Any:
    """The (C, h, w) logits of the batch's first frame, as a device array view."""
    from ..cuda.memory import DeviceArray, as_device_array

    arr = as_device_array(out)
    strides = arr.element_strides
    return DeviceArray(arr.ptr, tuple(arr.shape[1:]), arr.dtype, tuple(strides[1:]), arr.device)
