"""The shared header's float16 conversions (used by both twins) against NumPy's IEEE ones."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.kernels import cpu


def test_float_to_half_and_back_match_numpy():
    ext = cpu.extension()
    if ext is None:
        pytest.skip("the C++ extension is not built")
    with np.errstate(over="ignore", invalid="ignore"):
        _check(ext)


def _check(ext) -> None:
    rng = np.random.default_rng(0)
    specials = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, np.inf, -np.inf, 2.0**-24,
                         2.0**-25, 2.0**-25 * 1.0001, 2.0**-14, 2.0**-14 * 0.99, 5.96e-8, 1e-10], np.float32)
    values = np.concatenate([
        specials,
        rng.standard_normal(20000).astype(np.float32) * np.float32(10.0) ** rng.integers(-8, 5, 20000),
        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # every bit pattern
    ]).astype(np.float32)
    values = values[~np.isnan(values)]
    raw = ext.half_roundtrip(values)
    n = len(values)
    halves = np.frombuffer(raw[: 2 * n], np.uint16)
    back = np.frombuffer(raw[2 * n:], np.float32)
    np.testing.assert_array_equal(halves, values.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(back, values.astype(np.float16).astype(np.float32))
