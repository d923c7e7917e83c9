"""preprocess against cv2.resize(INTER_LINEAR) + normalisation, and against its NumPy restatement."""

from __future__ import annotations

import numpy as np
import pytest

import rtseg.kernels as K
from rtseg import RtsegError
from rtseg.kernels import reference

pytest.importorskip("cv2")

MEAN, STD = K.IMAGENET_MEAN, K.IMAGENET_STD
SIZES = [
    # (h, w) -> (H, W)
    ((480, 640), (512, 1024)),  # upscale, non-uniform
    ((240, 320), (480, 640)),  # exactly 2x
    ((720, 1280), (360, 640)),  # exactly 1/2
    ((37, 53), (100, 61)),  # odd sizes, mixed directions, tails not a multiple of the SIMD width
    ((100, 100), (33, 47)),
    ((50, 70), (50, 70)),  # same size
    ((1, 1), (4, 5)),
    ((5, 7), (3, 2)),
]


@pytest.mark.parametrize("src,dst", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_matches_opencv_chain(src, dst):
    rng = np.random.default_rng(src[0] * 7 + dst[1])
    frame = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    got = K.preprocess(frame, dst, MEAN, STD)
    want = reference.preprocess_opencv(frame, dst, MEAN, STD)
    assert got.shape == (1, 3, *dst) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(got, want)  # in fact bit-identical: the fixed-point steps are emulated exactly
    np.testing.assert_array_equal(got, reference.preprocess_numpy(frame, dst, MEAN, STD))


def test_bgr_order_float16_and_pixel_range():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    mean, std = (104.0, 117.0, 123.0), (1.0, 1.0, 1.0)  # Caffe-style: BGR, 0..255 units
    got = K.preprocess(frame, (32, 48), mean, std, rgb=False, pixel_range=1.0, dtype=np.float16)
    want = reference.preprocess_opencv(frame, (32, 48), mean, std, rgb=False, pixel_range=1.0, dtype=np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


def test_strided_frame_and_out():
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, (90, 130, 4), dtype=np.uint8)
    frame = big[5:80:2, 3:120, 2::-1]  # row step, column crop, reversed channels: no stride is the natural one
    out = np.empty((1, 3, 40, 64), np.float32)
    assert K.preprocess(frame, (40, 64), out=out) is out
    np.testing.assert_array_equal(out, reference.preprocess_opencv(np.ascontiguousarray(frame), (40, 64), MEAN, STD))


def test_torch_frame_gives_torch_tensor():
    torch = pytest.importorskip("torch")
    frame = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8)
    x = K.preprocess(frame, (16, 24))
    assert isinstance(x, torch.Tensor) and x.shape == (1, 3, 16, 24)


def test_bad_frames_raise_rtseg_error():
    with pytest.raises(RtsegError):
        K.preprocess(np.zeros((10, 10), np.uint8), (4, 4))
    with pytest.raises(RtsegError):
        K.preprocess(np.zeros((10, 10, 3), np.float32), (4, 4))
    with pytest.raises(RtsegError):
        K.preprocess(np.zeros((10, 10, 3), np.uint8), (4, 4), std=(1, 0, 1))
