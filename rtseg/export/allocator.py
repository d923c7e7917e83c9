"""Keep freed memory in the process for reuse during an export (glibc only).

An export allocates and frees tensors of tens to hundreds of megabytes thousands of times (PyTorch's reference
runs, ONNX Runtime sessions without an arena, the range probe). glibc serves every block above its mmap threshold
(at most 32 MB by default) with a fresh ``mmap`` and returns it on ``free``, so each one is faulted in page by page
again: on BiSeNetV1 at 1024x2048 that is ~14 s of system time in a ~55 s export. Raising the mmap and trim
thresholds lets freed blocks go back to the heap and be reused (the advice PyTorch gives for CPU inference, there
with jemalloc/tcmalloc). The price is that the resident size stays near the peak until the process ends, which
for a command-line export is when the memory would be given back anyway; the peak itself is what the blocks in
use need plus fragmentation (measured by benchmarks/export.py).

Called by the ``rtseg export`` command only, never on import: a library must not change its host's allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # from glibc's malloc.h
_MMAP_THRESHOLD = 256 << 20  # blocks below 256 MiB (activations) come from the heap and are reused after free;
#                              larger ones (a VGG's weights, serialised graphs) still go straight back to the system
_TRIM_THRESHOLD = (1 << 31) - 1  # give the heap's top back to the system only above ~2 GiB free
_TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps


def reuse_freed_memory() -> bool:
    """Tune glibc's malloc for an export's large, repeated allocations; False where this is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = all(libc.mallopt(option, value) == 1 for option, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
    except (OSError, AttributeError):
        return False
    log.debug("glibc malloc: freed blocks below %d MiB are kept for reuse (%s)", _MMAP_THRESHOLD >> 20,
              "set" if done else "partly set")
    return done
