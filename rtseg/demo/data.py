"""Labelled frames of the street world for training and evaluation, and the score they are judged by.

Every frame comes from its own world (seed) and camera, so the training set never repeats a street and the held-out
split shares none with it. A frame is rendered at a random size between the network's input and 2.5 times it and
resized to the input with ``cv2.INTER_LINEAR``, the resize the runtime applies to a 720p frame, so the network sees
what it will see on the video. The labels are rendered at the same size and resized by nearest neighbour.
"""

from __future__ import annotations

import numpy as np

from .render import random_camera, render
from .world import CLASSES, make_world

# World seeds of each split never overlap; the demo video's world (seed 1) belongs to none of them.
SPLIT_SEEDS = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}


def labelled_frame(split: str, index: int, size: tuple[int, int], max_scale: float = 2.5,
                   render_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of ``split``: ``(rgb uint8 (H, W, 3), labels uint8 (H, W))`` at ``size`` (or at
    ``render_size`` without resizing, for scoring at full resolution)."""
    import cv2

    seed = SPLIT_SEEDS[split] + index
    rng = np.random.default_rng([seed, 17])
    world = make_world(seed, length=300.0)
    cam = random_camera(rng, world)
    t = float(rng.uniform(0, 60))
    h, w = size
    if render_size is not None:
        return render(world, cam, t, *render_size, noise_seed=index)
    scale = float(rng.uniform(1.0, max_scale))
    rh, rw = round(h * scale), round(w * scale)
    rgb, labels = render(world, cam, t, rh, rw, noise_seed=index)
    if (rh, rw) != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return rgb, labels


def iou_scores(cm) -> tuple[float, dict[str, float]]:
    """Mean IoU (``rtseg eval``'s definition: a class only predicted counts as 0, one absent from both is left
    out) of a :class:`rtseg.eval.metrics.ConfusionMatrix`, and each present class's IoU by Cityscapes name."""
    from ..eval.metrics import scores
    from ..bundle.classes import CITYSCAPES

    s = scores(cm.matrix)
    names = [n for n, _ in CITYSCAPES]
    per_class = {names[k]: float(v) for k, v in enumerate(s.class_iou) if not np.isnan(v)}
    return s.mean_iou, per_class


__all__ = ["CLASSES", "SPLIT_SEEDS", "iou_scores", "labelled_frame"]
