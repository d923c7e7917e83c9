"""What a bundle's graph takes: a fixed size, or a profile (min, opt, max) and the model's size multiple."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RtsegError


@dataclass(frozen=True)
class InputSpec:
    """The input sizes a graph takes, (H, W): ``opt`` always; ``min``/``max`` for a dynamic graph."""

    opt: tuple[int, int]
    min: tuple[int, int] | None = None
    max: tuple[int, int] | None = None
    multiple: int = 1

    @property
    def dynamic(self) -> bool:
        return self.min is not None

    def as_dict(self) -> dict:
        """The manifest's ``shape`` and ``profile`` keys (NCHW, batch 1)."""
        if not self.dynamic:
            return {"shape": [1, 3, *self.opt], "profile": None}
        return {"shape": [1, 3, "height", "width"],
                "profile": {k: [1, 3, *v] for k, v in (("min", self.min), ("opt", self.opt), ("max", self.max))}}

    @classmethod
    def from_manifest(cls, inp: dict) -> InputSpec:
        profile = inp.get("profile")
        multiple = int(inp.get("size_multiple") or 1)
        if profile:
            return cls(tuple(profile["opt"][2:]), tuple(profile["min"][2:]), tuple(profile["max"][2:]), multiple)
        return cls(tuple(inp["shape"][2:]), multiple=multiple)

    def size_for(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The input size a frame runs at: the fixed size, or (dynamic) the frame scaled to fit the optimisation
        size with its aspect kept, rounded to the size multiple and clamped to the profile."""
        if not self.dynamic:
            return self.opt
        h, w = frame_hw
        scale = min(self.opt[0] / h, self.opt[1] / w)
        m = self.multiple
        size = []
        for n, lo, hi in ((h, self.min[0], self.max[0]), (w, self.min[1], self.max[1])):
            v = max(m, int(round(n * scale / m)) * m)
            lo_m, hi_m = -(-lo // m) * m, hi // m * m
            size.append(min(max(v, lo_m), hi_m))
        return size[0], size[1]

    def check(self, size: tuple[int, int]) -> None:
        h, w = size
        if self.dynamic:
            if not (self.min[0] <= h <= self.max[0] and self.min[1] <= w <= self.max[1]):
                raise RtsegError(f"input size {h}x{w} is outside the bundle's profile {self.min[0]}x{self.min[1]} to"
                                 f" {self.max[0]}x{self.max[1]}; pick a size inside it or re-export with a wider"
                                 f" --dynamic range")
            if h % self.multiple or w % self.multiple:
                raise RtsegError(f"input size {h}x{w} is not a multiple of {self.multiple}, as this model needs")
        elif (h, w) != self.opt:
            raise RtsegError(f"this bundle's graph takes only {self.opt[0]}x{self.opt[1]} inputs, not {h}x{w};"
                             f" re-export it with --dynamic to run other sizes")
