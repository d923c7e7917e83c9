"""Fused post- and pre-processing kernels: CUDA (NVRTC via cuda-python) with CPU twins.

Each function dispatches on where its input lives: a CUDA tensor, a ``__cuda_array_interface__`` object or a
:class:`DeviceArray` goes to the CUDA kernel (:mod:`rtseg.kernels.cuda`, on the caller's stream, no host
synchronisation); a NumPy array or CPU tensor goes to the C++ twin (:mod:`rtseg.kernels.cpu`). Both compute the
same arithmetic from cpp_ext/rtseg_pixel.h. :mod:`rtseg.kernels.reference` states what they compute in plain
PyTorch / NumPy.

:mod:`rtseg.kernels.cubin` says how kernels.cu is compiled (sources, options). Under the CUDA kernels, and shared
with the runtime, is the CUDA layer :mod:`rtseg.cuda`: driver, device memory (:class:`DeviceArray`), streams and
events, NVRTC, GPU info.

Label dtype: uint8 for up to 255 classes, int32 above (see :func:`label_dtype`). ``threads`` sets how many threads
a CPU twin splits its rows over (default :func:`default_threads`); the CUDA kernels ignore it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cuda.memory import DeviceArray as DeviceArray
from ..cuda.memory import is_device_array as is_device_array
from .cpu import default_threads as default_threads
from .cpu import label_dtype as label_dtype

#: ImageNet statistics in RGB order, in units of pixel / 255 (the usual torchvision normalisation)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def upsample_argmax(logits: Any, size: tuple[int, int], align_corners: bool = False, out: Any = None,
                    return_score: bool = False, stream: Any = None, threads: int | None = None):
    """Labels of ``argmax(F.interpolate(logits, size, mode="bilinear", align_corners=...), 1)`` without the
    full-resolution scores.

    logits: (N, C, h, w) or (C, h, w), float32 or float16, any strides -> labels (N, H, W) or (H, W), uint8 for
    C <= 255 else int32. Ties go to the lowest class index, as in PyTorch. float16 logits are interpolated in
    float32. With ``return_score`` also the winning interpolated score (float32), e.g. for confidence overlays.

    Where the four source pixels of an output pixel share one argmax, the convexity of the bilinear weights makes
    that class the answer without reading the other channels; only pixels near class boundaries interpolate all
    C channels. Identical to PyTorch's CPU kernel except where the two best interpolated scores lie within float
    rounding of each other (relative gap < 1e-5), which the tests count.
    """
    if is_device_array(logits):
        from . import cuda

        return cuda.upsample_argmax(logits, size, align_corners, out=out, return_score=return_score, stream=stream)
    from . import cpu

    return cpu.upsample_argmax(logits, size, align_corners, out=out, return_score=return_score, threads=threads)


def preprocess(frame: Any, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD, *, rgb: bool = True,
               pixel_range: float = 255.0, dtype=np.float32, out: Any = None, stream: Any = None,
               threads: int | None = None):
    """A BGR uint8 frame (h, w, 3) of any size and strides -> network input (1, 3, H, W), in one pass.

    Resize with OpenCV's INTER_LINEAR semantics (bit-exact with cv2.resize on uint8: 11-bit fixed-point weights),
    swap to RGB when ``rgb``, then ``(v / pixel_range - mean) / std`` in float32 with mean/std in the *output*
    channel order; float16 output is that value rounded to nearest even.
    """
    if is_device_array(frame):
        from . import cuda

        return cuda.preprocess(frame, size, mean, std, rgb=rgb, pixel_range=pixel_range, dtype=dtype, out=out,
                               stream=stream)
    from . import cpu

    return cpu.preprocess(frame, size, mean, std, rgb=rgb, pixel_range=pixel_range, dtype=dtype, out=out,
                          threads=threads)


def overlay(frame: Any, labels: Any, palette: Any, alpha: float = 0.5, out: Any = None, stream: Any = None,
            threads: int | None = None):
    """Blend palette colours of ``labels`` onto ``frame`` (H, W, 3) uint8, at the frame's size.

    labels (h, w) of any integer type are mapped to the frame by centre-aligned nearest neighbour; the blend is
    ``(frame * (256 - a) + colour * a + 128) >> 8`` with ``a = round(alpha * 256)``; labels outside
    ``[0, len(palette))`` (e.g. an ignore index 255) leave the frame's pixel unchanged. The palette is (K, 3)
    uint8 in the frame's channel order. ``out`` may be the frame itself.
    """
    from . import cpu

    if is_device_array(frame):
        from . import cuda

        alpha256 = _alpha256(alpha)
        return cuda.overlay(frame, labels, cpu._palette(palette), alpha256, out=out, stream=stream)
    return cpu.overlay(frame, labels, palette, alpha, out=out, threads=threads)


def colorize(labels: Any, palette: Any, out: Any = None, stream: Any = None, threads: int | None = None):
    """(H, W) labels -> (H, W, 3) uint8 ``palette[labels]``, black where a label has no colour."""
    from . import cpu

    if is_device_array(labels):
        from . import cuda

        return cuda.colorize(labels, cpu._palette(palette), out=out, stream=stream)
    return cpu.colorize(labels, palette, out=out, threads=threads)


def _alpha256(alpha: float) -> int:
    from ..errors import RtsegError
    from .reference import alpha_to_256

    if not 0.0 <= float(alpha) <= 1.0:
        raise RtsegError(f"alpha must be in [0, 1], got {alpha}")
    return alpha_to_256(alpha)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DeviceArray",
    "colorize",
    "default_threads",
    "is_device_array",
    "label_dtype",
    "overlay",
    "preprocess",
    "upsample_argmax",
]
