"""CUDA streams and events: where work is queued, and how its GPU time is measured.

Kernels, copies and the runtime's backends take any stream :func:`stream_handle` understands (an int handle,
a :class:`Stream`, a torch.cuda.Stream, a cuda.core Stream). Without one, the call goes on the stream its input's
``__cuda_array_interface__`` names (:func:`stream_for`), else on PyTorch's current stream, else on the legacy
default stream. :class:`Event` pairs give honest stage timings (:func:`elapsed`): a host timer around an
asynchronous call measures only the launch.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .driver import check, cuda_driver, on_device, release

if TYPE_CHECKING:
    from .memory import DeviceArray


def default_stream(like: Any = None) -> int:
    """PyTorch's current stream when torch is loaded and CUDA is initialised, else the legacy default stream."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        device = like.device if isinstance(like, torch.Tensor) and like.is_cuda else None
        return int(torch.cuda.current_stream(device).cuda_stream)
    return 0


def stream_handle(stream: Any, like: Any = None) -> int:
    """Accepts None (default_stream), an int handle, a torch.cuda.Stream, a :class:`Stream`, a cuda.core Stream
    or CUstream."""
    if stream is None:
        return default_stream(like)
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
        return int(stream.cuda_stream)
    if hasattr(stream, "__cuda_stream__"):  # cuda.core Stream protocol (and ours): (version, handle)
        return int(stream.__cuda_stream__()[1])
    if hasattr(stream, "handle"):
        return int(stream.handle)
    return int(stream)  # CUstream


def stream_for(arrays: Sequence[DeviceArray], stream: Any = None,
               like: Any = None) -> tuple[int, tuple[int, ...]]:
    """The stream a call on ``arrays`` runs on, and the other streams it must first wait for.

    The caller's ``stream`` when given; else the first stream an array names (its producer's, from
    ``__cuda_array_interface__``); else :func:`default_stream` of ``like``. Every other stream an array names
    may still have work pending on that array, so the call is ordered after it (:func:`wait_streams`).
    """
    named = [arr.stream for arr in arrays if arr.stream is not None]
    if stream is not None or not named:
        chosen = stream_handle(stream, like)
    else:
        chosen = named[0]
    return chosen, tuple(dict.fromkeys(s for s in named if s != chosen))


def wait_streams(stream: int, others: Sequence[int], device: int) -> None:
    """Order ``stream`` after the work queued so far on each of ``others``, without blocking the host."""
    for other in others:
        event = Event(device, timing=False)
        try:
            event.record(other)
            stream_wait(stream, event)
        finally:
            event.close()  # the driver keeps it until the wait is resolved


class Stream:
    """A CUDA stream of our own on ``device``: pass it (or ``handle``) as any kernel's or copy's ``stream=``.

    Non-blocking by default (no implicit ordering with the legacy default stream, so other libraries' work on
    it never stalls ours). Released by :meth:`close`, ``with``, or when garbage collected.
    """

    def __init__(self, device: int = 0, non_blocking: bool = True):
        driver = cuda_driver()
        flags = driver.CUstream_flags
        flag = flags.CU_STREAM_NON_BLOCKING if non_blocking else flags.CU_STREAM_DEFAULT
        with on_device(device):
            self.handle = int(check(driver.cuStreamCreate(int(flag)), "stream creation"))
        self.device = device
        self._release = weakref.finalize(self, release, "cuStreamDestroy", "CUstream", self.handle, device)

    def __cuda_stream__(self) -> tuple[int, int]:
        return 0, self.handle

    def synchronize(self) -> None:
        """Block the host until everything queued on this stream so far has run."""
        synchronize_stream(self.handle, self.device)

    def wait(self, event: Event) -> None:
        """Make later work on this stream wait for ``event`` (no host synchronisation)."""
        stream_wait(self, event)

    def close(self) -> None:
        self._release()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def synchronize_stream(stream: Any, device: int = 0) -> None:
    """Block the host until everything queued on ``stream`` (anything :func:`stream_handle` takes) has run."""
    driver = cuda_driver()
    with on_device(device):
        check(driver.cuStreamSynchronize(driver.CUstream(stream_handle(stream))), "stream synchronisation")


def stream_wait(stream: Any, event: Event) -> None:
    """Make work queued on ``stream`` from now on wait for ``event`` (no host synchronisation)."""
    driver = cuda_driver()
    with on_device(event.device):
        check(driver.cuStreamWaitEvent(driver.CUstream(stream_handle(stream)), driver.CUevent(event.handle), 0),
              "stream wait")


# ---------------------------------------------------------------------------------------------------------------
# Events


class Event:
    """A CUDA event on ``device``: :meth:`record` on a stream, then :func:`elapsed` between two of them measures
    the GPU time of the work between (what a host timer around asynchronous calls cannot)."""

    def __init__(self, device: int = 0, timing: bool = True):
        driver = cuda_driver()
        flags = driver.CUevent_flags
        flag = flags.CU_EVENT_DEFAULT if timing else flags.CU_EVENT_DISABLE_TIMING
        with on_device(device):
            self.handle = int(check(driver.cuEventCreate(int(flag)), "event creation"))
        self.device = device
        self._release = weakref.finalize(self, release, "cuEventDestroy", "CUevent", self.handle, device)

    def record(self, stream: Any = None) -> None:
        """Capture the work queued so far on ``stream`` (anything :func:`stream_handle` takes)."""
        driver = cuda_driver()
        with on_device(self.device):
            check(driver.cuEventRecord(driver.CUevent(self.handle), driver.CUstream(stream_handle(stream))),
                  "event record")

    def query(self) -> bool:
        """True once the recorded work has run (never blocks)."""
        driver = cuda_driver()
        with on_device(self.device):
            result = driver.cuEventQuery(driver.CUevent(self.handle))
        if (result[0] if isinstance(result, tuple) else result) == driver.CUresult.CUDA_ERROR_NOT_READY:
            return False
        check(result, "event query")
        return True

    def synchronize(self) -> None:
        """Block the host until the recorded work has run."""
        driver = cuda_driver()
        with on_device(self.device):
            check(driver.cuEventSynchronize(driver.CUevent(self.handle)), "event synchronisation")

    def close(self) -> None:
        self._release()


def elapsed(start: Event, end: Event) -> float:
    """Seconds of GPU time between two recorded events; waits for ``end`` (resolution about 0.5 µs)."""
    end.synchronize()
    driver = cuda_driver()
    with on_device(end.device):
        ms = check(driver.cuEventElapsedTime(driver.CUevent(start.handle), driver.CUevent(end.handle)),
                   "event timing")
    return float(ms) / 1000.0
