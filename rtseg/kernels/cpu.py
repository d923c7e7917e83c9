"""CPU face of the kernels: the C++ twins in ``rtseg._cpu_kernels``, or NumPy where the extension is missing.

Inputs are NumPy arrays or CPU torch tensors (read through ``.numpy()``, no copy); outputs are NumPy arrays, or
torch tensors sharing their memory when the input was a tensor. The extension is built by ``pip install``;
if the build found no compiler, the first call warns once and the NumPy statements in
:mod:`rtseg.kernels.reference` do the work (same results, much slower).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from typing import Any

import numpy as np

from ..errors import RtsegError
from . import reference


@functools.cache
def extension():
    """The compiled module, or None (with one warning) when it was not built."""
    try:
        module = importlib.import_module("rtseg._cpu_kernels")
    except ImportError as exc:
        warnings.warn(
            f"rtseg._cpu_kernels is not built ({exc}); the CPU kernels fall back to NumPy and are much slower. "
            "Reinstall rtseg with a C++17 compiler available (pip install -e .) to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return module


def default_threads() -> int:
    """Cores this process may use: $RTSEG_NUM_THREADS, else the CPU affinity mask."""
    if env := os.environ.get("RTSEG_NUM_THREADS"):
        try:
            return max(1, int(env))
        except ValueError:
            raise RtsegError(f"RTSEG_NUM_THREADS={env!r} is not a whole number; set it to a thread count"
                             " or unset it") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 for up to 255 classes, int32 above (the type torch indexes with)."""
    return np.dtype(np.uint8) if num_classes <= 255 else np.dtype(np.int32)


def _as_numpy(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """(array, was_torch). CPU tensors are viewed, not copied."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise RtsegError(f"{name} is on {x.device}; use the CUDA kernels or move it with .cpu()")
        return x.detach().numpy(), True
    return np.asarray(x), False


def _wrap(arr: np.ndarray, as_torch: bool):
    if as_torch:
        import torch

        return torch.from_numpy(arr)
    return arr


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, name: str) -> np.ndarray:
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise RtsegError(f"{name} must be {dtype.name} of shape {tuple(shape)}, got {out.dtype.name} {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise RtsegError(f"{name} must be a writable C-contiguous array")
    return out


def upsample_argmax(logits: Any, size: tuple[int, int], align_corners: bool = False, out: Any = None,
                    return_score: bool = False, threads: int | None = None):
    """CPU twin of :func:`rtseg.kernels.upsample_argmax`."""
    x, as_torch = _as_numpy(logits, "logits")
    squeeze = x.ndim == 3
    if squeeze:
        x = x[None]
    if x.ndim != 4:
        raise RtsegError(f"logits must be (N, C, h, w) or (C, h, w), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float16):
        raise RtsegError(f"logits must be float32 or float16, got {x.dtype}")
    N, C = x.shape[:2]
    H, W = (int(s) for s in size)
    if H < 1 or W < 1 or 0 in x.shape:
        raise RtsegError(f"cannot upsample logits of shape {x.shape} to {H}x{W}")
    ldt = label_dtype(C)
    shape = (N, H, W)
    if out is not None:
        labels = _check_out(_as_numpy(out, "out")[0], (H, W) if squeeze else shape, ldt, "out").reshape(shape)
    else:
        labels = np.empty(shape, ldt)
    score = np.empty(shape, np.float32) if return_score else None
    ext = extension()
    if ext is not None:
        ext.upsample_argmax(x, labels, score, bool(align_corners), threads or default_threads())
    else:
        lab, sc = reference.upsample_argmax_numpy(x, (H, W), align_corners, ldt)
        labels[...] = lab
        if score is not None:
            score[...] = sc
    if squeeze:
        labels, score = labels[0], (score[0] if score is not None else None)
    result = out if out is not None else _wrap(labels, as_torch)
    return (result, _wrap(score, as_torch)) if return_score else result


def preprocess(frame: Any, size: tuple[int, int], mean, std, *, rgb: bool = True, pixel_range: float = 255.0,
               dtype=np.float32, out: Any = None, threads: int | None = None):
    """CPU twin of :func:`rtseg.kernels.preprocess`."""
    f, as_torch = _as_numpy(frame, "frame")
    (H, W), dtype, mean, std = preprocess_args(f.shape, f.dtype, size, dtype, mean, std)
    shape = (1, 3, H, W)
    result = _check_out(_as_numpy(out, "out")[0] if out is not None else np.empty(shape, dtype), shape, dtype, "out")
    ext = extension()
    if ext is not None:
        ext.preprocess(f, result, mean, std, float(pixel_range), bool(rgb), threads or default_threads())
    else:
        result[...] = reference.preprocess_numpy(f, (H, W), mean, std, rgb=rgb, pixel_range=pixel_range, dtype=dtype)
    return out if out is not None else _wrap(result, as_torch)


def preprocess_args(frame_shape, frame_dtype, size, dtype, mean, std):
    """Check preprocess's arguments (shared by both twins): ``((H, W), dtype, mean, std)``."""
    if len(frame_shape) != 3 or frame_shape[2] != 3 or np.dtype(frame_dtype) != np.uint8:
        raise RtsegError(f"frame must be a uint8 (H, W, 3) BGR image, got {np.dtype(frame_dtype)} {tuple(frame_shape)}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise RtsegError(f"dtype must be float32 or float16, got {dtype}")
    H, W = (int(s) for s in size)
    if H < 1 or W < 1 or frame_shape[0] < 1 or frame_shape[1] < 1:
        raise RtsegError(f"cannot resize a {frame_shape[0]}x{frame_shape[1]} frame to {H}x{W}")
    return (H, W), dtype, _three(mean, "mean"), _three(std, "std")


def _three(values, name: str) -> list[float]:
    vals = [float(np.float32(v)) for v in np.asarray(values, np.float64).reshape(-1)]
    if len(vals) != 3:
        raise RtsegError(f"{name} needs 3 values (one per channel), got {len(vals)}")
    if name == "std" and any(v == 0 for v in vals):
        raise RtsegError("std must be non-zero")
    return vals


def _palette(palette: Any) -> np.ndarray:
    p = np.ascontiguousarray(np.asarray(palette))
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise RtsegError(f"palette must be (K, 3) colours, got shape {p.shape}")
    if p.dtype != np.uint8:
        if p.min() < 0 or p.max() > 255:
            raise RtsegError("palette colours must be in [0, 255]")
        p = p.astype(np.uint8)
    return p


def _labels(labels: Any) -> tuple[np.ndarray, bool]:
    lab, as_torch = _as_numpy(labels, "labels")
    if lab.ndim != 2:
        raise RtsegError(f"labels must be (H, W), got shape {lab.shape}")
    if lab.dtype not in (np.uint8, np.uint16, np.int32, np.int64):
        if not np.issubdtype(lab.dtype, np.integer):
            raise RtsegError(f"labels must be integers, got {lab.dtype}")
        lab = lab.astype(np.int64)
    return lab, as_torch


def overlay(frame: Any, labels: Any, palette: Any, alpha: float = 0.5, out: Any = None,
            threads: int | None = None):
    """CPU twin of :func:`rtseg.kernels.overlay`."""
    f, as_torch = _as_numpy(frame, "frame")
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
        raise RtsegError(f"frame must be a uint8 (H, W, 3) image, got {f.dtype} {f.shape}")
    lab, _ = _labels(labels)
    if not 0.0 <= float(alpha) <= 1.0:
        raise RtsegError(f"alpha must be in [0, 1], got {alpha}")
    pal = _palette(palette)
    result = _check_out(_as_numpy(out, "out")[0] if out is not None else np.empty(f.shape, np.uint8), f.shape,
                        np.dtype(np.uint8), "out")
    ext = extension()
    if ext is not None:
        ext.overlay(f, lab, pal, reference.alpha_to_256(alpha), result, threads or default_threads())
    else:
        result[...] = reference.overlay_numpy(f, lab, pal, alpha)
    return out if out is not None else _wrap(result, as_torch)


def colorize(labels: Any, palette: Any, out: Any = None, threads: int | None = None):
    """CPU twin of :func:`rtseg.kernels.colorize`."""
    lab, as_torch = _labels(labels)
    pal = _palette(palette)
    shape = (*lab.shape, 3)
    result = _check_out(_as_numpy(out, "out")[0] if out is not None else np.empty(shape, np.uint8), shape,
                        np.dtype(np.uint8), "out")
    ext = extension()
    if ext is not None:
        ext.colorize(lab, pal, result, threads or default_threads())
    else:
        result[...] = reference.colorize_numpy(lab, pal)
    return out if out is not None else _wrap(result, as_torch)
