"""The fused upsample+argmax CPU twin against argmax(F.interpolate(...)) on seeded random logits."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rtseg.kernels as K
from rtseg import RtsegError
from rtseg.kernels import cpu, reference

NEAR_TIE = 1e-5  # the documented tolerance: relative gap between the two best interpolated scores


def _compare(logits: np.ndarray, size, align_corners: bool) -> tuple[int, int]:
    """(mismatches, of which near ties). Asserts every mismatch is a near tie and scores match."""
    labels, score = K.upsample_argmax(logits, size, align_corners, return_score=True)
    x = logits if logits.ndim == 4 else logits[None]
    ref_labels, ref_score, up = reference.upsample_argmax_torch(torch.from_numpy(np.ascontiguousarray(x)), size,
                                                                 align_corners)
    ref_labels, ref_score = ref_labels.numpy(), ref_score.numpy()
    if logits.ndim == 3:
        ref_labels, ref_score, up = ref_labels[0], ref_score[0], up[0:1]
    assert labels.dtype == K.label_dtype(x.shape[1])
    assert labels.shape == ref_labels.shape
    wrong = labels != ref_labels
    margin = reference.top2_relative_margin(up.numpy()).reshape(ref_labels.shape)
    assert np.all(margin[wrong] < NEAR_TIE), f"{wrong.sum()} label(s) differ away from a near tie"
    # The winning score is the interpolated value (exact arithmetic of PyTorch's vectorised kernel; its scalar
    # path for narrow outputs rounds differently, within a few ulp).
    np.testing.assert_allclose(score, ref_score, rtol=2e-6, atol=2e-6)
    return int(wrong.sum()), int((margin < NEAR_TIE).sum())


CASES = [
    # N, C, h, w, H, W
    (1, 19, 32, 64, 256, 512),
    (2, 5, 7, 9, 31, 45),
    (1, 150, 17, 23, 100, 130),
    (1, 1, 4, 4, 9, 9),
    (1, 2, 13, 11, 40, 23),
    (1, 3, 10, 10, 7, 5),  # downsampling
    (1, 7, 1, 1, 5, 6),  # a single source pixel
    (1, 4, 6, 6, 6, 6),  # same size: a copy
    (1, 256, 5, 7, 21, 29),  # int32 labels
]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_random_logits_match_pytorch(case, align_corners):
    N, C, h, w, H, W = case
    rng = np.random.default_rng(sum(case) + align_corners)
    logits = rng.standard_normal((N, C, h, w)).astype(np.float32)
    wrong, near = _compare(logits, (H, W), align_corners)
    print(f"{case} align_corners={align_corners}: {wrong} label(s) differ, all at near ties ({near} near ties)")


@pytest.mark.parametrize("align_corners", [False, True])
def test_float16_logits_are_interpolated_in_float32(align_corners):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 19, 12, 20)).astype(np.float16)
    _compare(logits, (96, 160), align_corners)


@pytest.mark.parametrize("layout", ["channels_last", "strided", "flipped", "chw"])
def test_non_contiguous_inputs(layout):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((1, 12, 18, 26)).astype(np.float32)
    if layout == "channels_last":
        logits = np.ascontiguousarray(base.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "strided":
        logits = np.ascontiguousarray(np.repeat(base, 2, axis=3))[:, ::2, :, ::2]
    elif layout == "flipped":
        logits = base[:, ::-1, ::-1]
    else:
        logits = base[0, :, 1:, 3:]
    assert not logits.flags.c_contiguous
    _compare(logits, (70, 90), False)


def test_realistic_logits_are_exact():
    """Smooth logits, like a network's: every label equals PyTorch's (near ties are vanishingly rare here)."""
    g = torch.Generator().manual_seed(0)
    low = torch.randn(1, 19, 8, 16, generator=g) * 4
    logits = F.interpolate(low, (64, 128), mode="bilinear", align_corners=False).numpy()  # (1, 19, 64, 128)
    labels = K.upsample_argmax(logits, (512, 1024))
    ref = F.interpolate(torch.from_numpy(logits), (512, 1024), mode="bilinear").argmax(1).numpy()
    assert (labels != ref).sum() == 0


def test_shortcut_agrees_with_full_evaluation():
    """The convexity shortcut gives what interpolating every channel gives (NumPy restatement, no shortcut)."""
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((1, 9, 15, 17)).astype(np.float32)
    labels, score = K.upsample_argmax(logits, (61, 67), return_score=True)
    full_labels, full_score = reference.upsample_argmax_numpy(logits, (61, 67))
    up = reference.bilinear_numpy(logits, (61, 67))
    margin = reference.top2_relative_margin(up)
    wrong = labels != full_labels
    assert np.all(margin[wrong] < NEAR_TIE)
    np.testing.assert_array_equal(score, full_score)


def test_ties_go_to_the_lowest_class():
    logits = np.zeros((1, 4, 3, 3), np.float32)
    logits[0, 2] = 1.0
    logits[0, 3] = 1.0  # class 2 and 3 tie everywhere
    assert np.all(K.upsample_argmax(logits, (7, 7)) == 2)
    assert np.all(K.upsample_argmax(np.zeros((5, 2, 2), np.float32), (4, 4)) == 0)


def test_label_dtype_widens_above_255_classes():
    assert K.label_dtype(255) == np.uint8
    assert K.label_dtype(256) == np.int32
    logits = np.zeros((256, 2, 2), np.float32)
    logits[255] = 1.0
    labels = K.upsample_argmax(logits, (3, 3))
    assert labels.dtype == np.int32 and np.all(labels == 255)


def test_torch_input_gives_torch_output_and_out_is_filled():
    x = torch.randn(1, 6, 5, 7)
    labels = K.upsample_argmax(x, (11, 13))
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.uint8
    out = np.empty((1, 11, 13), np.uint8)
    assert K.upsample_argmax(x.numpy(), (11, 13), out=out) is out
    np.testing.assert_array_equal(out, labels.numpy())


def test_bad_arguments_raise_rtseg_error():
    with pytest.raises(RtsegError):
        K.upsample_argmax(np.zeros((2, 3), np.float32), (4, 4))
    with pytest.raises(RtsegError):
        K.upsample_argmax(np.zeros((1, 2, 3, 3), np.float64), (4, 4))
    with pytest.raises(RtsegError):
        K.upsample_argmax(np.zeros((1, 2, 3, 3), np.float32), (4, 4), out=np.empty((1, 4, 5), np.uint8))


def test_numpy_fallback_warns_and_matches(monkeypatch):
    """Without the extension, the CPU face warns once and gives the same labels through NumPy."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((1, 5, 9, 11)).astype(np.float32)
    fast = K.upsample_argmax(logits, (30, 40))
    monkeypatch.setitem(sys.modules, "rtseg._cpu_kernels", None)  # makes the import fail
    cpu.extension.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="NumPy"):
            slow = K.upsample_argmax(logits, (30, 40))
    finally:
        cpu.extension.cache_clear()
    up = reference.bilinear_numpy(logits, (30, 40))
    wrong = fast != slow
    assert np.all(reference.top2_relative_margin(up)[wrong] < NEAR_TIE)


def test_extension_is_built():
    """pip install builds the C++ twin here; the fallback is for machines without a compiler."""
    assert cpu.extension() is not None
