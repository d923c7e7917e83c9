"""Ctrl-C and SIGTERM end every command the same way: ``rtseg: interrupted``, exit status 130, nothing half-written.

Both signals become a :class:`KeyboardInterrupt`, so ``finally`` blocks (temporary files, the bundle's cleanup) run
and the CLI prints one line. One exception: while a module is being imported, raising would interrupt a C/C++
extension's initialisation, which can abort the whole process (a C++ ``terminate`` and a screenful of output).
There the signal is held and raised as soon as no import is under way (checked every 50 ms).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_RECHECK_S = 0.05
_held = False


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame):
    global _held
    if _importing(frame):
        _held = True
        signal.setitimer(signal.ITIMER_REAL, _RECHECK_S)
        return
    _held = False
    raise KeyboardInterrupt


def _on_recheck(signum, frame):
    if _held:
        _on_signal(signum, frame)


@contextmanager
def interrupts_as_keyboard_interrupt():
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt (held while an import runs)."""
    global _held
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield  # signal handlers can only be set from the main thread (and ITIMER_REAL is POSIX)
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_recheck)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _held = False
        for s, handler in previous.items():
            signal.signal(s, handler)


class GracefulStop:
    """For long runs with outputs to finalise: the first SIGINT/SIGTERM calls ``on_first`` (stop reading, drain,
    finalise) and records the signal in ``signum``; a second one raises KeyboardInterrupt. ``restore()`` puts the
    previous handlers back. Does nothing off the main thread or when ``enabled`` is false."""

    def __init__(self, on_first, enabled: bool = True):
        self.signum: int | None = None
        self.on_first = on_first
        self.previous = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.on_first()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
