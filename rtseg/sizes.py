"""Sizes and devices as users write them: ``HxW``, ``MINHxMINW:MAXHxMAXW``, ``cpu``/``cuda:N``.

Every command reads these through the functions here, so a typo gets the same one-line :class:`RtsegError`
whatever command it was given to. Each reader takes the flag's name for its message and also accepts its own
output (a recipe's TOML lists, an already-read value).
"""

from __future__ import annotations

import re

from .errors import RtsegError

MAX_SIDE = 65536  # no camera or tiling scheme asks more; larger sides are surely typos
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def read_size(value, flag: str) -> tuple[int, int]:
    """``"512x1024"`` (or ``[512, 1024]``) -> ``(512, 1024)``; each side between 1 and :data:`MAX_SIDE`."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        h, w = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise RtsegError(f"{flag} {value!r}: expected HxW, e.g. 512x1024")
        h, w = int(m.group(1)), int(m.group(2))
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise RtsegError(f"{flag} {value!r}: height and width must be between 1 and {MAX_SIDE}")
    return int(h), int(w)


def read_range(value, flag: str = "--dynamic") -> tuple[tuple[int, int], tuple[int, int]]:
    """``"256x512:1024x2048"`` (or a pair of sizes) -> ``((256, 512), (1024, 2048))``, minimum <= maximum."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (list, tuple)) for v in value):
        lo, hi = read_size(value[0], flag), read_size(value[1], flag)
    else:
        parts = str(value).split(":")
        if len(parts) != 2:
            raise RtsegError(f"{flag} {value!r}: expected MINHxMINW:MAXHxMAXW, e.g. 256x512:1024x2048")
        lo, hi = read_size(parts[0], flag), read_size(parts[1], flag)
    if lo[0] > hi[0] or lo[1] > hi[1]:
        raise RtsegError(f"{flag} {value!r}: the minimum is larger than the maximum")
    return lo, hi


# the names the command-line modules have always used
parse_size = read_size
parse_range = read_range


def parse_device(device: str | None) -> str | None:
    """Normalise a device argument: None (choose), "cpu", or "cuda:N"."""
    if device is None or device == "auto":
        return None
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu"
    if text in ("cuda", "gpu"):
        return "cuda:0"
    if text.startswith("cuda:") and text[5:].isdigit():
        return text
    raise RtsegError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
