"""Adaptive average pooling written so that it exports to ONNX with dynamic input sizes.

``nn.AdaptiveAvgPool2d(b)`` exports to ONNX only when the input size is known and divisible by ``b``; the pyramid
pooling modules of Fast-SCNN and ICNet pool their 1/32 feature map to 1, 2, 3 and 6 bins at whatever size the
input has. :func:`adaptive_avg_pool` computes the same bins from the runtime shape with slices and means, so a
traced graph keeps the bin edges as shape arithmetic instead of freezing them for the export size.
"""

from __future__ import annotations

import torch


def adaptive_bin_edges(length: int, bins: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling bins along one axis: ``[floor(i*n/b), ceil((i+1)*n/b))`` for ``i < b``.

    Neighbouring bins overlap when ``b`` does not divide ``n``, and repeat rows when ``n < b``; no bin is empty.
    """
    return [((i * length) // bins, ((i + 1) * length + bins - 1) // bins) for i in range(bins)]


def adaptive_avg_pool(x: torch.Tensor, bins: int) -> torch.Tensor:  # (N, C, H, W) -> (N, C, bins, bins)
    """``F.adaptive_avg_pool2d(x, bins)`` (within float rounding) that traces with symbolic H and W.

    Every bin is a rectangle, so its mean is the mean over columns of the mean over rows: pooling the two axes
    one after the other needs ``2 * bins`` slices instead of ``bins ** 2``.
    """
    if bins == 1:
        return x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1), as ATen does for a 1x1 output
    return _pool_axis(_pool_axis(x, bins, dim=2), bins, dim=3)


def _pool_axis(x: torch.Tensor, bins: int, dim: int) -> torch.Tensor:
    length = x.shape[dim]  # a SymInt or traced size under export, so the edges below stay symbolic
    cells = []
    for start, end in adaptive_bin_edges(length, bins):
        cells.append(x.narrow(dim, start, end - start).mean(dim=dim, keepdim=True))  # one bin along dim
    return torch.cat(cells, dim=dim)  # bins along dim
