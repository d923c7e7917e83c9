"""What a saved, shown or served frame looks like: ``--visualize overlay|mask|side``, the class legend drawn into
it, ``--ignore-class`` and the display palette.

The display palette keeps each class's own colour where it stands out, and gives the classes whose colour is
close to grey (Cityscapes' building, wall, fence, pole) a saturated hue far from the others, and dull blues
(sky) more saturation: blended at ``DEFAULT_ALPHA`` over a grey facade or a grey sky, every class stays visibly
coloured. Only the classes the model knows (``model.source.classes_trained`` in the manifest, else all) are
listed in the legend.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from ..errors import RtsegError
from .decoders import import_cv2

VISUALIZE = ("overlay", "mask", "side")
DEFAULT_ALPHA = 0.6


def class_ids(names: list[str], wanted: list[str], flag: str = "--ignore-class") -> list[int]:
    """Class names (or ids) -> ids, with one line naming the classes there are where one is unknown."""
    ids = []
    for w in wanted:
        w = str(w).strip()
        if w in names:
            ids.append(names.index(w))
        elif w.isdigit() and int(w) < len(names):
            ids.append(int(w))
        else:
            raise RtsegError(f"{flag} {w}: the model has no such class; its classes are {', '.join(names)}")
    return ids


def display_palette(palette_rgb, shown: list[int] | None = None) -> np.ndarray:
    """(N, 3) uint8 RGB: ``palette_rgb`` with near-grey colours given distinct hues and dull ones saturated."""
    pal = np.asarray(palette_rgb, np.uint8).reshape(-1, 3).copy()
    shown = list(range(len(pal))) if shown is None else shown
    hsv = {i: colorsys.rgb_to_hsv(*(pal[i] / 255.0)) for i in range(len(pal))}
    hues = [hsv[i][0] for i in shown if hsv[i][1] >= 0.4]
    for i in shown:
        h, s, v = hsv[i]
        if s < 0.4:  # grey-like: invisible on grey scenes; the hue farthest from every colour in use
            h = _free_hue(hues)
            hues.append(h)
            s, v = 0.9, 1.0
        elif v < 0.8 and s < 0.7 and not _near(h, [hsv[j][0] for j in shown if j != i]):
            s, v = 0.85, 0.95  # dull (sky's steel blue): more colour, same hue (unless a neighbour has it)
        else:
            continue
        pal[i] = [round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)]
    return pal


def _near(h: float, hues: list[float], within: float = 0.05) -> bool:
    return any(abs((h - o + 0.5) % 1.0 - 0.5) < within for o in hues)


def _free_hue(hues: list[float]) -> float:
    candidates = np.arange(0, 1, 1 / 72)
    if not hues:
        return 0.08
    dist = np.min(np.abs(((candidates[:, None] - np.asarray(hues)[None, :]) + 0.5) % 1.0 - 0.5), axis=1)
    return float(candidates[int(np.argmax(dist))])


def draw_legend(image: np.ndarray, names: list[str], colours_bgr: list, min_height: int = 96) -> bool:
    """A legend box (swatch + name per class) in the bottom-left corner of ``image``, in place. Columns are added
    where the rows do not fit; an image under ``min_height`` pixels gets none (False)."""
    cv2 = import_cv2()
    h, w = image.shape[:2]
    if not names or h < min_height or w < min_height:
        return False
    scale = min(max(h / 1100, 0.35), 1.0)
    thick = 1 if scale < 0.7 else 2
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    row = th + base + max(4, int(6 * scale))
    pad = max(4, int(8 * scale))
    rows = max(1, min(len(names), (h - 2 * pad) // row))
    cols = -(-len(names) // rows)
    text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for n in names)
    col_w = row + pad + text_w + pad
    box_w, box_h = min(w, cols * col_w + pad), min(h, min(rows, len(names)) * row + pad)
    x0, y0 = 0, h - box_h
    region = image[y0:h, x0:x0 + box_w]
    region[:] = (region.astype(np.uint16) * 2 // 7).astype(np.uint8)  # dark backing: readable on any scene
    for k, (name, colour) in enumerate(zip(names, colours_bgr)):
        c, r = divmod(k, rows)
        x, y = x0 + pad + c * col_w, y0 + pad // 2 + r * row
        sw = row - max(4, int(6 * scale))
        cv2.rectangle(image, (x, y + 2), (x + sw, y + 2 + sw), tuple(int(v) for v in colour), -1)
        cv2.putText(image, name, (x + sw + pad, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thick, cv2.LINE_AA)
    return True


@dataclass
class Picture:
    """Frame + labels -> the picture every sink shows: overlay, colour mask, or original | overlay side by side,
    ``ignore`` classes left undrawn, the legend drawn in (``legend``)."""

    class_names: list[str]
    palette_rgb: np.ndarray             # the display palette
    mode: str = "overlay"
    alpha: float = DEFAULT_ALPHA
    legend: bool = True
    shown: list[int] = field(default_factory=list)     # classes in the legend (known, not ignored)
    ignore: list[int] = field(default_factory=list)
    threads: int | None = None

    def __post_init__(self):
        if self.mode not in VISUALIZE:
            raise RtsegError(f"--visualize {self.mode}: expected one of {', '.join(VISUALIZE)}")
        self.palette_bgr = np.ascontiguousarray(np.asarray(self.palette_rgb, np.uint8)[:, ::-1])
        self._ignored = np.zeros(max(len(self.palette_bgr), 256), bool)
        self._ignored[list(self.ignore)] = True

    @classmethod
    def for_segmenter(cls, seg, mode: str = "overlay", alpha: float = DEFAULT_ALPHA, legend: bool = True,
                      ignore=()) -> Picture:
        names = list(seg.class_names)
        ignored = class_ids(names, list(ignore))
        shown = [i for i in seg.trained_classes if i not in ignored]
        return cls(names, display_palette(seg.palette, shown), mode, alpha, legend, shown, ignored,
                   getattr(seg, "threads", None))

    @property
    def legend_entries(self) -> tuple[list[str], list[list[int]]]:
        """The legend's names and RGB colours (also the browser page's)."""
        return [self.class_names[i] for i in self.shown], [list(map(int, self.palette_rgb[i])) for i in self.shown]

    def __call__(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        from .. import kernels

        if self.mode == "mask":
            image = kernels.colorize(labels, self.palette_bgr, threads=self.threads)
        else:
            image = kernels.overlay(frame, labels, self.palette_bgr, self.alpha, threads=self.threads)
        if self.ignore:
            where = self._ignored[labels]
            image[where] = 0 if self.mode == "mask" else frame[where]
        if self.legend:
            names, colours = self.legend_entries
            draw_legend(image, names, [c[::-1] for c in colours])
        return np.hstack([frame, image]) if self.mode == "side" else image
