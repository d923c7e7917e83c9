"""What a run shows while it works: a tqdm bar for files and folders, a one-line status for live streams."""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(stats, source)`` after every result and ``tick(...)`` while waiting; ``close()`` at the end."""

    def __init__(self, total: int | None, live: bool, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar = None
        self.live = live
        self.last = 0.0
        self.width = 0
        if enabled and not live:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, stats, source) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            return
        self.tick(stats, source)

    def tick(self, stats, source) -> None:
        """A live status line, at most twice a second."""
        if not self.enabled or self.bar is not None:
            return
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        p50 = stats.latency.percentile(50) if stats.latency.count else float("nan")
        line = (f"rtseg: {source.state} | {stats.frames} frames | {stats.fps():.1f} fps | drops {source.drops}"
                f" | latency p50 {p50 * 1e3:.0f} ms")
        self.width = max(self.width, len(line))
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()
