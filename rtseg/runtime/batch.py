"""True batches: several frames as ONE inference (``Segmenter.segment_batch``).

The frames are preprocessed into one ``(N, 3, H, W)`` buffer (frames whose input size differs, with a dynamic
bundle, go in separate groups), the runner is called once per group, and each frame's logits are upsampled and
argmaxed to that frame's size. How many frames one call may take is the graph's batch axis: a bundle exported with
``rtseg export ... --max-batch N`` has a symbolic one (checked at export, the manifest's ``build.max_batch`` says up
to how many), PyTorch eager takes any batch, a graph exported at batch 1 takes one (its frames then run one call
each, as before). On a GPU the resident path runs frame by frame for now.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import RtsegError


def read_batch_sizes(text: str, flag: str = "--batch") -> list[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; each a whole number >= 1 (``--batch 0`` is one line, not a traceback)."""
    sizes = []
    for part in str(text).split(","):
        try:
            n = int(part.strip())
        except ValueError:
            raise RtsegError(f"{flag} {text!r}: expected whole numbers >= 1 separated by commas, e.g. 1,2,4,8") from None
        if n < 1:
            raise RtsegError(f"{flag} {text!r}: a batch holds at least 1 frame; pass sizes >= 1, e.g. 1,2,4,8")
        sizes.append(n)
    return sizes


def max_batch(seg) -> int | None:
    """The most frames one runner call of ``seg`` takes: None for no limit, 1 for a graph exported at batch 1. A
    graph's symbolic batch axis is held to what export checked (the manifest's ``build.max_batch``)."""
    limit = seg.runner.max_batch()
    if limit is None and seg.runner.backend != "torch":  # PyTorch eager has no graph export checked
        recorded = seg.manifest.build.get("max_batch")
        return int(recorded) if recorded else None
    return limit


def segment_batch(seg, frames: list[np.ndarray], return_score: bool = False) -> list:
    """The :class:`~rtseg.runtime.segmenter.SegmentResult` of each frame, in order; one runner call per group of
    frames of one input size (at most :func:`max_batch` frames each). Timings are the call's, divided among its frames."""
    from .segmenter import SegmentResult, check_frame

    frames = [check_frame(f) for f in frames]
    limit = max_batch(seg) if not seg.runner.on_gpu else 1
    if limit == 1 or len(frames) <= 1:
        return [seg.segment(f, return_score) for f in frames]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(seg.input_size_for(frame.shape[:2]), []).append(i)
    results: list = [None] * len(frames)
    for size, members in groups.items():
        step = limit or len(members)
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            t0 = time.perf_counter()
            x = _batched_input(seg, size, [frames[i] for i in chunk])
            t1 = time.perf_counter()
            out = seg.runner.infer(x)
            t2 = time.perf_counter()
            if len(out) != len(chunk):
                raise RtsegError(f"the graph gave {len(out)} outputs for a batch of {len(chunk)} frames; re-export"
                                 f" the bundle with --max-batch")
            for j, i in enumerate(chunk):
                labels, score = seg._postprocess(out[j], frames[i].shape[:2], return_score)
                results[i] = SegmentResult(labels, {}, score, size)
            t3 = time.perf_counter()
            n = len(chunk)
            for i in chunk:
                results[i].timings = {"preprocess": (t1 - t0) / n, "infer": (t2 - t1) / n,
                                      "postprocess": (t3 - t2) / n}
    return results


def _batched_input(seg, size: tuple[int, int], frames: list[np.ndarray]) -> np.ndarray:
    """The segmenter's (N, 3, H, W) input buffer for this size, each frame preprocessed into its slice."""
    buf = seg.input_buffer(size, len(frames))
    for j, frame in enumerate(frames):
        seg._preprocess(frame, size, out=buf[j:j + 1])
    return buf
