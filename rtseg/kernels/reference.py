"""What each kernel computes, stated in plain PyTorch / NumPy.

Two kinds of statement live here:

* the *semantics* the kernels promise, in the libraries users already trust: ``argmax(F.interpolate(...))``,
  ``cv2.resize`` followed by normalisation; the tests compare the kernels with these;
* a NumPy restatement of the kernels' exact arithmetic (the same taps, roundings and fixed-point steps as
  cpp_ext/rtseg_pixel.h), which is also the fallback when the C++ extension could not be built.

All functions are slow and allocate full-resolution intermediates; they exist to be read and compared with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# upsample_argmax


def upsample_argmax_torch(logits: Any, size: tuple[int, int], align_corners: bool = False):
    """``argmax(F.interpolate(logits, size, mode="bilinear"), 1)``: (N, C, h, w) -> labels (N, H, W), scores.

    float16 logits are interpolated in float32 (the kernels do the same: rounding the interpolated scores back to
    float16 before the argmax would invent ties between classes that float32 tells apart).
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(logits).float()  # (N, C, h, w)
    up = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)  # (N, C, H, W)
    score, labels = up.max(1)  # ties: the lowest index, as argmax
    return labels, score, up


def top2_relative_margin(up: np.ndarray) -> np.ndarray:
    """(N, C, H, W) interpolated scores -> (N, H, W) (top1 - top2) / max(|top1|, tiny): how near a tie each pixel is.

    The fused kernel takes its shortcut where all four source pixels agree; in exact arithmetic that is always the
    right class, in float32 a pixel whose two best scores differ by a rounding error may flip. Such pixels are
    the documented tolerance (relative margin < 1e-5).
    """
    if up.shape[1] < 2:
        return np.full((up.shape[0], *up.shape[2:]), np.inf, np.float32)
    part = -np.partition(-up, 1, axis=1)[:, :2]  # the two largest, largest first
    top1, top2 = part[:, 0], part[:, 1]
    return (top1 - top2) / np.maximum(np.abs(top1), np.finfo(np.float32).tiny)


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    # float64 holds a float32 product exactly; the sum is then rounded twice (to float64, then float32), which
    # differs from a true fused multiply-add only in rare half-way cases.
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def torch_linear_taps(in_size: int, out_size: int, align_corners: bool):
    """PyTorch's bilinear source indices and weights along one axis: (i0, i1, l0, l1) arrays of length out_size."""
    f32 = np.float32
    dst = np.arange(out_size)
    if in_size == out_size:
        return dst, dst, np.ones(out_size, f32), np.zeros(out_size, f32)
    if align_corners:
        scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
        src = (scale * dst.astype(f32)).astype(f32)
    else:
        scale = f32(in_size) / f32(out_size)
        src = _fma(np.full(out_size, scale, f32), dst.astype(f32) + f32(0.5), np.full(out_size, -0.5, f32))
        src = np.maximum(src, f32(0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (f32(1) - l1).astype(f32), l1


def bilinear_numpy(logits: np.ndarray, size: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """(N, C, h, w) -> (N, C, H, W) float32 with the kernels' arithmetic (rtseg_pixel.h ``bilerp``)."""
    x = np.asarray(logits).astype(np.float32)
    H, W = size
    y0, y1, ly0, ly1 = torch_linear_taps(x.shape[2], H, align_corners)
    x0, x1, lx0, lx1 = torch_linear_taps(x.shape[3], W, align_corners)
    rows0, rows1 = x[:, :, y0], x[:, :, y1]  # (N, C, H, w)
    top = _fma(rows0[..., x0], lx0, rows0[..., x1] * lx1)  # (N, C, H, W)
    bot = _fma(rows1[..., x0], lx0, rows1[..., x1] * lx1)
    return _fma(top, ly0[:, None], bot * ly1[:, None])


def upsample_argmax_numpy(logits: np.ndarray, size: tuple[int, int], align_corners: bool = False,
                          label_dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """NumPy fallback of the fused kernel (no shortcut): (N, C, h, w) -> labels (N, H, W), scores (N, H, W)."""
    up = bilinear_numpy(logits, size, align_corners)
    return up.argmax(1).astype(label_dtype), up.max(1)


# ---------------------------------------------------------------------------------------------------------------
# preprocess


def preprocess_opencv(frame: np.ndarray, size: tuple[int, int], mean, std, *, rgb: bool = True,
                      pixel_range: float = 255.0, dtype=np.float32) -> np.ndarray:
    """The chain the kernel replaces: cv2.resize(INTER_LINEAR), BGR->RGB, (v / range - mean) / std, to NCHW."""
    import cv2

    H, W = size
    resized = cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR)  # (H, W, 3) uint8, BGR
    if rgb:
        resized = resized[..., ::-1]
    f32 = np.float32
    x = (resized.astype(f32) / f32(pixel_range) - np.asarray(mean, f32)) / np.asarray(std, f32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(dtype)  # (1, 3, H, W)


def opencv_linear_taps(in_size: int, out_size: int, clamp_edges: bool):
    """OpenCV's INTER_LINEAR taps for 8-bit images: (i0, i1, w0, w1) with 11-bit fixed-point weights."""
    scale = 1.0 / (out_size / in_size)
    f = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_edges:
        low, high = s < 0, s >= in_size - 1
        f[low], s[low] = 0, 0
        f[high], s[high] = 0, in_size - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)  # round half to even, as cvRound
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    return np.clip(s, 0, in_size - 1), np.clip(s + 1, 0, in_size - 1), w0, w1


def resize_linear_u8_numpy(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize(frame, INTER_LINEAR) for uint8 (h, w, 3), restated: horizontal pass in int, SIMD vertical pass."""
    H, W = size
    src = np.asarray(frame).astype(np.int64)  # (h, w, 3)
    xi0, xi1, xw0, xw1 = opencv_linear_taps(src.shape[1], W, clamp_edges=True)
    yi0, yi1, yw0, yw1 = opencv_linear_taps(src.shape[0], H, clamp_edges=False)
    hor = src[:, xi0] * xw0[None, :, None] + src[:, xi1] * xw1[None, :, None]  # (h, W, 3), weights sum to 2048
    s0, s1 = hor[yi0], hor[yi1]  # (H, W, 3)
    v = (((s0 >> 4) * yw0[:, None, None]) >> 16) + (((s1 >> 4) * yw1[:, None, None]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def preprocess_numpy(frame: np.ndarray, size: tuple[int, int], mean, std, *, rgb: bool = True,
                     pixel_range: float = 255.0, dtype=np.float32) -> np.ndarray:
    """NumPy fallback of the preprocess kernel, bit-identical to it (and to preprocess_opencv)."""
    resized = resize_linear_u8_numpy(frame, size)
    if rgb:
        resized = resized[..., ::-1]
    f32 = np.float32
    x = (resized.astype(f32) / f32(pixel_range) - np.asarray(mean, f32)) / np.asarray(std, f32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(dtype)


# ---------------------------------------------------------------------------------------------------------------
# overlay / colorize


def alpha_to_256(alpha: float) -> int:
    """The blend weight in 1/256 steps: round(alpha * 256), alpha in [0, 1]."""
    return int(round(float(alpha) * 256))


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Centre-aligned nearest source index per output index: floor((dst + 0.5) * in / out), in integers."""
    return ((2 * np.arange(out_size, dtype=np.int64) + 1) * in_size) // (2 * out_size)


def colorize_numpy(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """palette[labels], black where a label has no colour (outside [0, K))."""
    labels = np.asarray(labels).astype(np.int64)
    palette = np.asarray(palette, np.uint8)
    valid = (labels >= 0) & (labels < len(palette))
    out = palette[np.where(valid, labels, 0)]
    out[~valid] = 0
    return out


def overlay_numpy(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """(frame * (256 - a) + colour * a + 128) >> 8 with a = round(alpha * 256), labels resized to the frame
    by centre-aligned nearest neighbour; pixels whose label has no colour keep the frame's value."""
    H, W = frame.shape[:2]
    labels = np.asarray(labels).astype(np.int64)
    labels = labels[nearest_indices(labels.shape[0], H)][:, nearest_indices(labels.shape[1], W)]  # (H, W)
    palette = np.asarray(palette, np.uint8)
    valid = (labels >= 0) & (labels < len(palette))
    colour = palette[np.where(valid, labels, 0)].astype(np.int64)  # (H, W, 3)
    f = np.asarray(frame).astype(np.int64)
    a = alpha_to_256(alpha)
    blended = (f * (256 - a) + colour * a + 128) >> 8
    return np.where(valid[..., None], blended, f).astype(np.uint8)
