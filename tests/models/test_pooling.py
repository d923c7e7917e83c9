"""adaptive_avg_pool equals torch's adaptive_avg_pool2d at every size, and stays dynamic through ONNX export."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtseg.models.pooling import adaptive_avg_pool, adaptive_bin_edges

BINS = (1, 2, 3, 6)
# Smaller than every bin count, equal to it, divisible, non-divisible, odd and large.
LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 25, 31, 32, 33, 64, 65)


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("bins", BINS)
def test_bin_edges_match_pytorch_formula(bins):
    for n in LENGTHS:
        edges = adaptive_bin_edges(n, bins)
        assert len(edges) == bins
        for i, (start, end) in enumerate(edges):
            assert start == int(np.floor(i * n / bins))
            assert end == int(np.ceil((i + 1) * n / bins))
            assert 0 <= start < end <= n
        assert edges[0][0] == 0 and edges[-1][1] == n


@pytest.mark.parametrize("bins", BINS)
def test_matches_torch_adaptive_avg_pool2d(bins):
    """Within float rounding of torch's kernel, and at least as close to the float64 truth.

    ATen sums each bin sequentially in float32 (about 7e-7 relative off the float64 result on these inputs); ours
    reduces rows then columns with torch's pairwise means (about 2e-7).
    """
    gen = torch.Generator().manual_seed(bins)
    worst_torch = worst_exact = 0.0
    for h in LENGTHS:
        for w in (1, 3, 4, 6, 7, 10, 13, 32, 33):
            x = torch.randn(2, 3, h, w, generator=gen) * 4 + 1  # mixed signs, non-zero mean
            ours, ref = adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins)
            assert ours.shape == ref.shape == (2, 3, bins, bins)
            worst_torch = max(worst_torch, _rel_err(ours, ref))
            worst_exact = max(worst_exact, _rel_err(ours.double(), F.adaptive_avg_pool2d(x.double(), bins)))
    assert worst_torch <= 2e-6, f"bins={bins}: worst relative difference to torch {worst_torch:.3g}"
    assert worst_exact <= 1e-6, f"bins={bins}: worst relative error to float64 {worst_exact:.3g}"


def test_bin_one_is_bit_exact():
    x = torch.randn(1, 8, 17, 29)
    assert torch.equal(adaptive_avg_pool(x, 1), F.adaptive_avg_pool2d(x, 1))


def test_pools_channels_independently_and_batches():
    x = torch.randn(3, 5, 9, 14)
    whole = adaptive_avg_pool(x, 6)
    assert torch.equal(whole[1:2, 2:4], adaptive_avg_pool(x[1:2, 2:4], 6))


class _Pyramid(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, 1 + 4 + 9 + 36)
        return torch.cat([adaptive_avg_pool(x, b).flatten(2) for b in BINS], dim=2)


def test_onnx_export_keeps_bins_dynamic():
    """Exported at one size, the graph pools correctly at sizes that do not divide the bins (legacy exporter)."""
    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    torch.onnx.export(_Pyramid(), (torch.randn(1, 4, 12, 24),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for h, w in ((12, 24), (4, 8), (7, 13), (2, 3), (20, 33)):
        x = torch.randn(1, 4, h, w)
        (y,) = session.run(None, {"x": x.numpy()})
        ref = torch.cat([F.adaptive_avg_pool2d(x, b).flatten(2) for b in BINS], dim=2)
        assert _rel_err(torch.from_numpy(y), ref) <= 1e-6, (h, w)
