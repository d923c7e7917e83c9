"""overlay and colorize against their NumPy statement: exact."""

from __future__ import annotations

import numpy as np
import pytest

import rtseg.kernels as K
from rtseg import RtsegError
from rtseg.kernels import reference


def _palette(k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_overlay_matches_numpy(dtype, alpha):
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = rng.integers(0, 21, (37, 53)).astype(dtype)  # 19 colours: labels 19 and 20 have none
    palette = _palette(19)
    got = K.overlay(frame, labels, palette, alpha)
    np.testing.assert_array_equal(got, reference.overlay_numpy(frame, labels, palette, alpha))
    if alpha == 0.0:
        np.testing.assert_array_equal(got, frame)


@pytest.mark.parametrize("label_size", [(16, 32), (75, 101), (1, 1)])
def test_overlay_resizes_labels_to_the_frame(label_size):
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, label_size).astype(np.uint8)
    palette = _palette(5, 1)
    np.testing.assert_array_equal(K.overlay(frame, labels, palette, 0.6),
                                  reference.overlay_numpy(frame, labels, palette, 0.6))


def test_overlay_in_place_and_strided():
    rng = np.random.default_rng(6)
    frame = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (40, 48)).astype(np.int64)[::2, ::2]
    palette = _palette(3, 2)
    want = reference.overlay_numpy(frame, labels, palette, 0.5)
    strided = np.ascontiguousarray(frame[:, ::-1])[:, ::-1]  # negative column stride
    np.testing.assert_array_equal(K.overlay(strided, labels, palette, 0.5), want)
    assert K.overlay(frame, labels, palette, 0.5, out=frame) is frame
    np.testing.assert_array_equal(frame, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_colorize_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    labels = rng.integers(-1, 20, (33, 47)).astype(np.int64)
    if dtype == np.uint8:
        labels = np.where(labels < 0, 255, labels)
    labels = labels.astype(dtype)
    palette = _palette(19, 3)
    got = K.colorize(labels, palette)
    np.testing.assert_array_equal(got, reference.colorize_numpy(labels, palette))
    assert got.shape == (33, 47, 3) and got.dtype == np.uint8


def test_bad_arguments_raise_rtseg_error():
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(RtsegError):
        K.overlay(frame, np.zeros((4, 4), np.uint8), np.zeros((3, 4), np.uint8))
    with pytest.raises(RtsegError):
        K.overlay(frame, np.zeros((4, 4), np.uint8), _palette(2), alpha=1.5)
    with pytest.raises(RtsegError):
        K.colorize(np.zeros((4, 4), np.float32), _palette(2))
