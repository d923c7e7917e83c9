"""Frames for verification and calibration: synthetic street-like scenes, or the user's images and video.

Pure noise is a poor test of a segmentation graph: it has no large smooth regions (where logits sit near decision
boundaries for many pixels at once), no long straight edges and no repeated texture. :func:`synthetic_scenes`
draws frames with all three (a sky gradient, a road with lane marks, buildings with window grids, round blobs,
fine noise) from a seed, so verification is deterministic and needs no dataset.

Frames are uint8 RGB ``(H, W, 3)``; :func:`rtseg.bundle.normalize` turns them into a graph's float NCHW input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import RtsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def synthetic_scenes(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``count`` deterministic street-like uint8 RGB frames ``(count, H, W, 3)``."""
    return np.stack([_scene(np.random.default_rng([seed, i]), height, width) for i in range(count)])


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Every shape is drawn on the rows and columns it can touch (the coordinates are separable, so the values are
    # the ones a whole-frame computation gives; the random draws keep their order, so a seed gives the same frame).
    yn = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None]  # (H, 1)
    xn = (np.arange(w, dtype=np.float32) / max(w - 1, 1))[None, :]  # (1, W)
    horizon = rng.uniform(0.3, 0.6)

    # Sky: a vertical gradient between two random blues/greys (a large smooth region).
    top, bottom = rng.uniform([60, 90, 150], [140, 170, 255]), rng.uniform([150, 170, 190], [230, 230, 250])
    t = np.clip(yn / horizon, 0, 1)[..., None]  # (H, 1, 1)
    img = np.empty((h, w, 3))
    img[:] = (1 - t) * top + t * bottom  # (H, W, 3)

    # Road: a darker ground below the horizon with perspective lane marks (long oblique edges).
    ground = (yn > horizon)[:, 0]  # (H,)
    road = rng.uniform(70, 120) + 15 * (yn - horizon)[..., None]  # (H, 1, 1)
    img[ground] = (road * np.array([1.0, 1.0, 1.05]))[ground]
    depth = np.clip((yn - horizon) / (1 - horizon), 1e-3, 1)  # (H, 1)
    rows = ground & (np.sin(40 / depth) > -0.2)[:, 0]  # the dashes' rows
    d = depth[rows]  # (rows, 1)
    for lane in rng.uniform(-0.8, 0.8, size=rng.integers(1, 4)):
        mark = np.abs(xn - (0.5 + lane * d)) < 0.006 + 0.01 * d  # (rows, W); the lane narrows towards the horizon
        img[rows] = np.where(mark[..., None], (235.0, 235.0, 225.0), img[rows])

    # Buildings: rectangles standing on the horizon, each with a window grid (texture and sharp edges).
    for _ in range(rng.integers(3, 8)):
        x0 = rng.uniform(-0.1, 0.95)
        bw, bh = rng.uniform(0.08, 0.3), rng.uniform(0.15, horizon)
        r, c = _span((yn[:, 0] >= horizon - bh) & (yn[:, 0] < horizon + 0.02)), _span((xn[0] >= x0) & (xn[0] < x0 + bw))
        colour = rng.uniform(50, 220, size=3)
        img[r, c] = colour
        period = rng.uniform(0.015, 0.04)
        windows = (np.mod(yn[r], period * 1.3) < period * 0.6) & (np.mod(xn[:, c] - x0, period) < period * 0.5)
        img[r, c][windows] = colour * rng.uniform(0.3, 0.7)

    # Blobs: cars, trees, people (curved edges over the road and buildings).
    for _ in range(rng.integers(3, 9)):
        cy, cx = rng.uniform(horizon - 0.1, 1.0), rng.uniform(0, 1)
        ry, rx = rng.uniform(0.02, 0.12), rng.uniform(0.02, 0.15)
        dy, dx = ((yn - cy) / ry) ** 2, ((xn - cx) / rx) ** 2  # (H, 1), (1, W)
        r, c = _span(dy[:, 0] < 1), _span(dx[0] < 1)  # a sum of squares below 1 has each below 1
        blob = dy[r] + dx[:, c] < 1
        shade = np.broadcast_to(1 - 0.4 * np.clip(dy[r], 0, 1), blob.shape)  # a soft vertical shading inside
        img[r, c][blob] = (rng.uniform(0, 255, size=3) * shade[blob][:, None])

    # Fine texture everywhere (sensor noise, foliage, asphalt grain).
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _span(mask: np.ndarray) -> slice:
    """The slice from the first to the last True of a 1-D mask (empty where none is)."""
    hit = np.flatnonzero(mask)
    return slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0)


def load_frames(source: str | os.PathLike, count: int, height: int, width: int) -> np.ndarray:
    """Up to ``count`` frames from an image, a folder of images or a video, resized to ``(H, W)``: uint8 RGB."""
    return load_frames_named(source, count, height, width)[0]


def load_frames_named(source: str | os.PathLike, count: int, height: int, width: int
                      ) -> tuple[np.ndarray, list[str]]:
    """:func:`load_frames`, with the name of each frame's origin (file name, or video name and frame index)."""
    cv2 = _cv2()
    path = Path(source)
    if not path.exists():
        raise RtsegError(f"--calib {source}: no such file or folder; pass images, a folder of images or a video")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise RtsegError(f"--calib {source}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        step = max(1, len(files) // count)
        chosen = files[::step][:count]
        images, names = [_read_image(cv2, p) for p in chosen], [p.name for p in chosen]
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        images, names = [_read_image(cv2, path)], [path.name]
    else:
        images, indices = _read_video(cv2, path, count)
        names = [f"{path.name} frame {i}" for i in indices]
    return np.stack([_resize(cv2, im, height, width) for im in images]), names


def _cv2():
    try:
        import cv2
    except ModuleNotFoundError:
        raise RtsegError("OpenCV is not installed; install it with: pip install 'rtseg[export]'") from None
    return cv2


def _read_image(cv2, path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RtsegError(f"cannot read image {path}; is it a valid image file?")
    return bgr[..., ::-1]  # (H, W, 3) RGB


def _read_video(cv2, path: Path, count: int) -> tuple[list[np.ndarray], list[int]]:
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    step = max(1, total // count) if total > 0 else 1
    frames, indices, index = [], [], 0
    while cap.isOpened() and len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(bgr[..., ::-1])
            indices.append(index)
        index += 1
    cap.release()
    if not frames:
        raise RtsegError(f"--calib {path}: cannot read frames; pass images, a folder of images or a video file")
    return frames, indices


def _resize(cv2, rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb)
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)
