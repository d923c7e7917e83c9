"""Multi-scale and flip inference: several passes of one frame, their logits averaged, one upsample+argmax.

``load(bundle, scales=(0.75, 1.0, 1.25), flip=True)`` runs every frame at each scale and, with ``flip``, also
mirrored left to right. Per frame:

1. the input size of each scale is the bundle's input size for the frame (:meth:`Segmenter.input_size_for`) times
   the scale, rounded to the model's size multiple and clamped to the dynamic profile;
2. each scale is preprocessed once and run, and with ``flip`` run again on that input mirrored;
3. its low-resolution logits are flipped back (mirrored passes), resized bilinearly with the graph's own
   ``align_corners`` to one common size -- the largest pass's logits size -- and summed; the sum is divided by the
   number of passes;
4. the fused ``upsample_argmax`` kernel goes from the averaged logits to the frame's size once.

The logits resize is PyTorch's ``F.interpolate(mode="bilinear")`` stated as two small matrices per size pair
(rows ``Ry``, columns ``Rx``: ``Ry @ logits @ Rx.T``), built once from the taps the kernels use
(:func:`rtseg.kernels.reference.torch_linear_taps`). Stage timings are totals over the passes (``preprocess``,
``infer``) plus ``merge`` (flip back, resize, average) and ``postprocess``.

A fixed-size bundle cannot change its input size, so it takes only scale 1 (flip still works); a bundle whose
graph ends in labels has nothing to average; on a GPU it is refused for now (the resident path has no logits
resize yet).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from ..errors import RtsegError

MAX_SCALE = 8.0  # beyond this a scale is surely a typo (and would leave any profile anyway)


def read_scales(value, flag: str = "--scales") -> tuple[float, ...]:
    """``"0.75,1,1.25"`` (or a sequence of numbers) -> ``(0.75, 1.0, 1.25)``: positive, finite, at most
    :data:`MAX_SCALE`, each once, in the order given."""
    parts = value.split(",") if isinstance(value, str) else (list(value) if value is not None else [])
    example = "e.g. 0.75,1,1.25"
    if not parts or all(str(p).strip() == "" for p in parts):
        raise RtsegError(f"{flag} is empty: give one or more scales separated by commas, {example}")
    scales = []
    for part in parts:
        try:
            s = float(str(part).strip()) if isinstance(part, str) else float(part)
        except (TypeError, ValueError):
            raise RtsegError(f"{flag} {value!r}: {str(part).strip()!r} is not a number; {example}") from None
        if not math.isfinite(s) or s <= 0:
            raise RtsegError(f"{flag} {value!r}: a scale must be a number above 0 (1 is the bundle's own size),"
                             f" {example}")
        if s > MAX_SCALE:
            raise RtsegError(f"{flag} {value!r}: scale {s:g} is above {MAX_SCALE:g}; {example}")
        if s in scales:
            raise RtsegError(f"{flag} {value!r}: scale {s:g} is given twice; give each scale once")
        scales.append(s)
    return tuple(scales)


def add_arguments(parser) -> None:
    """``--scales S,S,...`` and ``--flip``, the same for rtseg run, eval and bench."""
    parser.add_argument("--scales", metavar="S,S,...",
                        help="multi-scale inference: run each frame at these scales of its input size and average"
                             " the logits, e.g. 0.75,1,1.25 (a bundle exported with --dynamic; CPU)")
    parser.add_argument("--flip", action="store_true",
                        help="also run each frame mirrored left to right and average it in (with or without --scales)")


def load_options(args) -> dict:
    """``scales=``/``flip=`` for :func:`rtseg.runtime.load` from the parsed ``--scales``/``--flip`` (checked here,
    so a bad value is one line before anything is opened or written)."""
    scales = getattr(args, "scales", None)
    return {"scales": read_scales(scales) if scales is not None else None, "flip": bool(getattr(args, "flip", False))}


def label(scales, flip: bool) -> str:
    """``"scales 0.75,1,1.25 + flip"``: the passes as a table row names them."""
    text = "scales " + ",".join(f"{s:g}" for s in scales) if scales and tuple(scales) != (1.0,) else ""
    return " + ".join(t for t in (text, "flip" if flip else "") if t)


def scaled_size(spec, base: tuple[int, int], scale: float) -> tuple[int, int]:
    """``base`` times ``scale``, rounded to the spec's size multiple and (dynamic) clamped to its profile."""
    if scale == 1.0 or not spec.dynamic:
        return tuple(base)
    m = spec.multiple
    size = []
    for n, lo, hi in ((base[0], spec.min[0], spec.max[0]), (base[1], spec.min[1], spec.max[1])):
        v = max(m, int(round(n * scale / m)) * m)
        size.append(min(max(v, -(-lo // m) * m), hi // m * m))
    return size[0], size[1]


@functools.lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray | None:
    """(out_size, in_size) float32 matrix of PyTorch's 1-D bilinear resize; None when the sizes are equal."""
    if in_size == out_size:
        return None
    from ..kernels.reference import torch_linear_taps

    i0, i1, l0, l1 = torch_linear_taps(in_size, out_size, align_corners)
    mat = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(mat, (rows, i0), l0)
    np.add.at(mat, (rows, i1), l1)
    return mat


def resize_logits(logits: np.ndarray, size: tuple[int, int], align_corners: bool) -> np.ndarray:
    """(C, h, w) -> (C, H, W) float32, bilinear as ``F.interpolate`` (a view of the input when sizes agree)."""
    ry = resize_matrix(logits.shape[1], size[0], align_corners)
    rx = resize_matrix(logits.shape[2], size[1], align_corners)
    out = logits if rx is None else np.matmul(logits, rx.T)
    return out if ry is None else np.matmul(ry, out)


class MultiScale:
    """The passes of one :class:`~rtseg.runtime.segmenter.Segmenter` (see the module docstring)."""

    def __init__(self, seg, scales, flip: bool):
        self.seg = seg
        self.scales = read_scales(scales if scales is not None else (1.0,), "scales")
        self.flip = bool(flip)
        #: (scale, mirrored) of each pass, in the order run: largest first, so its logits set the common size
        mirror = (False, True) if self.flip else (False,)
        self.passes = [(s, m) for s in sorted(self.scales, reverse=True) for m in mirror]
        if not self.active:
            return  # one pass: the Segmenter's own path, whatever the bundle or device
        if seg.output_kind == "labels":
            raise RtsegError("this bundle's graph ends in labels, which cannot be averaged over scales or flips;"
                             " re-export it with --head logits (the default) to use --scales/--flip")
        if not seg.spec.dynamic and any(s != 1.0 for s in self.scales):
            h, w = seg.spec.opt
            raise RtsegError(f"this bundle's graph takes only {h}x{w} inputs, so it cannot run at scales other"
                             f" than 1; re-export it with --dynamic MINHxMINW:MAXHxMAXW to use --scales")
        if seg.runner.on_gpu:
            raise RtsegError("multi-scale/flip inference runs on the CPU for now; pass device='cpu' (--device cpu)"
                             " or leave out --scales/--flip")

    @property
    def active(self) -> bool:
        return len(self.passes) > 1

    def describe(self) -> dict:
        return {"scales": list(self.scales), "flip": self.flip, "passes": len(self.passes)}

    def sizes(self, frame_hw: tuple[int, int]) -> list[tuple[int, int]]:
        """The network input size of each pass for a frame of this size."""
        base = self.seg.input_size_for(frame_hw)
        return [scaled_size(self.seg.spec, base, s) for s, _ in self.passes]

    def logits(self, frame: np.ndarray, timings: dict[str, float] | None = None) -> np.ndarray:
        """The averaged low-resolution logits (C, h, w) float32 of one checked BGR frame."""
        seg = self.seg
        timings = {} if timings is None else timings
        for k in ("preprocess", "infer", "merge"):
            timings.setdefault(k, 0.0)
        acc = x = None
        for (_, flip), size in zip(self.passes, self.sizes(frame.shape[:2])):
            t0 = time.perf_counter()
            # a mirrored pass follows its scale's plain one: its input is that input mirrored (resizing commutes
            # with mirroring), not a second resize of the frame
            x = np.ascontiguousarray(x[..., ::-1]) if flip else seg._preprocess(frame, size)
            t1 = time.perf_counter()
            out = seg.runner.infer(x)[0]
            t2 = time.perf_counter()
            if out.shape[0] != seg.num_classes:
                raise RtsegError(f"the graph gave {out.shape[0]} channels, the manifest says {seg.num_classes}"
                                 f" classes; the bundle is inconsistent: re-export it")
            out = out[..., ::-1] if flip else out
            if acc is None:  # the largest pass: its logits size is the common one
                acc = np.array(out, np.float32, copy=True)
            else:
                acc += resize_logits(out.astype(np.float32, copy=False), acc.shape[1:], seg.align_corners)
            timings["preprocess"] += t1 - t0
            timings["infer"] += t2 - t1
            timings["merge"] += time.perf_counter() - t2
        t = time.perf_counter()
        acc *= np.float32(1.0 / len(self.passes))
        timings["merge"] += time.perf_counter() - t
        return acc

    def segment(self, frame: np.ndarray, return_score: bool = False, alpha: float | None = None):
        from ..kernels import upsample_argmax
        from .segmenter import SegmentResult

        seg = self.seg
        timings: dict[str, float] = {}
        logits = self.logits(frame, timings)
        t = time.perf_counter()
        res = upsample_argmax(logits, frame.shape[:2], seg.align_corners, return_score=return_score,
                              threads=seg.threads)
        labels, score = res if return_score else (res, None)
        shown = seg.overlay(frame, labels, alpha) if alpha is not None else None
        timings["postprocess"] = time.perf_counter() - t
        return SegmentResult(labels, timings, score, seg.input_size_for(frame.shape[:2]), shown)
