"""A first, coarse memory check before anything is allocated: does verification at these sizes fit this machine?

A typo such as ``--input-size 100000x100000`` would otherwise ask NumPy for hundreds of GiB while drawing the
verification frames, and die with a MemoryError traceback (or get the process killed). :func:`check_size_fits`
estimates the memory that verification alone needs (the frames, the model's largest activations, the reference
logits upsampled to input size and its labels) and refuses sizes whose estimate exceeds the memory this machine has
available. The estimate is deliberately low (a lower bound for the smallest zoo model), so it never refuses a size
that would have fitted; a finer per-model peak estimate can replace :func:`verification_bytes`.
"""

from __future__ import annotations

from ..errors import RtsegError
from ..machine import available_memory

_ACTIVATION_BYTES_PER_PIXEL = 4 * 32  # float32, >= 32 channels at input resolution (a lower bound for every model)


def verification_bytes(sizes: list[tuple[tuple[int, int], int]], num_classes: int) -> int:
    """Bytes verification holds at once, for ``[((H, W), frames), ...]``: all frames, then the largest size's work."""
    frames = sum(n * 3 * h * w * 4 for (h, w), n in sizes)  # float32 (N, 3, H, W), kept for every size
    labels = sum(n * h * w * 8 for (h, w), n in sizes)  # int64 reference labels
    work = max(n * h * w * (num_classes * 4 + 8) + h * w * _ACTIVATION_BYTES_PER_PIXEL for (h, w), n in sizes)
    return frames + labels + work


def check_size_fits(sizes: list[tuple[tuple[int, int], int]], num_classes: int, flag: str = "--input-size") -> None:
    """Raise a one-line RtsegError when verification at ``sizes`` cannot fit in the available memory."""
    # what the machine has (the finer estimate in rtseg.export.memory also weighs the process's limits)
    need, (have, limited_by) = verification_bytes(sizes, num_classes), available_memory(limits=False)
    if limited_by == "unknown" or need <= have:
        return
    (h, w), _ = max(sizes, key=lambda s: s[0][0] * s[0][1])
    raise RtsegError(f"{flag}: verifying at {h}x{w} needs at least {need / 2**30:.1f} GiB of memory and this machine"
                     f" has {have / 2**30:.1f} GiB available; pass a smaller size (or fewer --calib-frames)")
