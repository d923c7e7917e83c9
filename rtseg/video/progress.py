"""What a run shows while it works: a tqdm bar for files and folders, a one-line status for live streams.

On a terminal the bar and the status line redraw in place; anywhere else (a log, a pipe, CI) they become one
plain line every ``LOG_EVERY`` seconds, so logs hold no carriage-return noise.
"""

from __future__ import annotations

import sys
import time

LOG_EVERY = 5.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """``update(stats, source)`` after every result and ``tick(...)`` while waiting; ``close()`` at the end.

    ``total`` is the source's frame count (already divided by ``--vid-stride``), capped at ``max_frames``."""

    def __init__(self, total: int | None, live: bool, enabled: bool, stream=None, max_frames: int | None = None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.terminal = _is_terminal(self.stream)
        self.bar = None
        self.live = live
        self.last = time.monotonic() if not self.terminal else 0.0
        self.width = 0
        if max_frames is not None:
            total = min(total, max_frames) if total is not None else max_frames
        self.total = total
        if enabled and not live and self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, stats, source) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            return
        self.tick(stats, source)

    def line(self, stats, source) -> str:
        p50 = stats.latency.percentile(50) if stats.latency.count else float("nan")
        done = f"{stats.frames}/{self.total}" if self.total and not self.live else f"{stats.frames}"
        line = (f"rtseg: {source.state} | {done} frames | {stats.current_fps():.1f} fps now, {stats.fps():.1f}"
                f" mean | drops {source.drops}")
        if stats.outages:
            line += f" | outages {stats.outages}"
        if self.live:
            line += f" | latency p50 {p50 * 1e3:.0f} ms"
        return line

    def tick(self, stats, source) -> None:
        """The status line: redrawn at most twice a second on a terminal, one line every LOG_EVERY s otherwise."""
        if not self.enabled or self.bar is not None:
            return
        now = time.monotonic()
        if now - self.last < (0.5 if self.terminal else LOG_EVERY):
            return
        self.last = now
        line = self.line(stats, source)
        if not self.terminal:
            self.stream.write(line + "\n")
        else:
            self.width = max(self.width, len(line))
            self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()
