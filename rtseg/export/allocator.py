"""Keep freed memory in the process for reuse during an export (glibc only).

An export allocates and frees tensors of tens to hundreds of megabytes thousands of times (PyTorch's reference
runs, ONNX Runtime sessions without an arena, the range probe). glibc serves every block above its mmap threshold
(at most 32 MB by default) with a fresh ``mmap`` and returns it on ``free``, so each one is faulted in page by page
again: on BiSeNetV1 at 1024x2048 that is ~14 s of system time in a ~55 s export. Raising the mmap and trim
thresholds lets freed blocks go back to the heap and be reused (the advice PyTorch gives for CPU inference, there
with jemalloc/tcmalloc). The price is that the resident size stays near the step's peak until the step ends; the
peak itself is what the blocks in use need plus fragmentation (measured by benchmarks/export.py).

Called by the ``rtseg export`` command only, never on import: a library must not change its host's allocator.
Between steps :func:`release_memory` hands what is free back to the system, so one step's leftovers do not add to
the next step's peak; within a step the freed blocks are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
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
    libc = _glibc()
    if libc is None:
        return False
    done = all([libc.mallopt(option, value) == 1 for option, value in (  # a list: every option is tried
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD))])
    log.debug("glibc malloc: freed blocks below %d MiB are kept for reuse (%s)", _MMAP_THRESHOLD >> 20,
              "set" if done else "partly set")
    return done


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere only the
    collection). Freed protobuf and tensor buffers otherwise stay in the process's heap, counted in its resident
    memory, and the next step's peak adds to them."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc():
    """glibc's handle, or None where the C library is another (musl, macOS) or cannot be loaded."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
