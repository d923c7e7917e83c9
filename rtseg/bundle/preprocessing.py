"""How a uint8 frame becomes a graph's input: the normalisation a bundle records and every consumer applies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How a uint8 frame becomes the graph input: ``(pixel * value_scale / 255 - mean) / std`` per channel.

    ``value_scale`` 1.0 means mean/std are given for pixels in [0, 1]; 255.0 means for raw [0, 255] pixels.
    ``channel_order`` is the order the graph expects ("RGB" or "BGR"); ``mean``/``std`` are in that order.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    value_scale: float = 1.0

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order,
                "value_scale": self.value_scale, "layout": "NCHW", "dtype": "float32"}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """From a manifest's ``input`` section (the keys :meth:`as_dict` writes)."""
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]),
                   str(d.get("channel_order", "RGB")).upper(), float(d.get("value_scale", 1.0)))


def normalize(frames: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 RGB ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` as the graph takes it."""
    x = frames.astype(np.float32) * np.float32(pre.value_scale / 255.0)  # (N, H, W, 3) RGB
    if pre.channel_order.upper() == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, H, W)


IMAGENET = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", 1.0)
