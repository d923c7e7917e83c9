"""Class names and palettes written into a bundle's manifest, so a consumer can draw and label masks.

Cityscapes (19 train ids) and Pascal VOC (21) are known by name; any other class count gets ``class_<i>`` names
and a deterministic, well-spread palette.
"""

from __future__ import annotations

import colorsys

from ..errors import RtsegError

CITYSCAPES = (
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("pole", (153, 153, 153)), ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)), ("person", (220, 20, 60)), ("rider", (255, 0, 0)), ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)), ("bus", (0, 60, 100)), ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)

_VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
              "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
              "tvmonitor")


def _voc_colour(i: int) -> tuple[int, int, int]:
    # The VOC devkit palette: the bits of the class id spread over the high bits of R, G and B.
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((i >> 0) & 1) << shift
        g |= ((i >> 1) & 1) << shift
        b |= ((i >> 2) & 1) << shift
        i >>= 3
    return r, g, b


VOC = tuple((name, _voc_colour(i)) for i, name in enumerate(_VOC_NAMES))
DATASETS = {"cityscapes": CITYSCAPES, "voc": VOC}


def class_table(num_classes: int, dataset: str | None = None) -> tuple[list[str], list[list[int]]]:
    """Names and RGB palette for ``num_classes``: from ``dataset`` if given, else guessed from the count."""
    if dataset is None:
        dataset = {19: "cityscapes", 21: "voc"}.get(num_classes)
    if dataset is not None:
        table = DATASETS.get(dataset.lower())
        if table is None:
            raise RtsegError(f"unknown class set {dataset!r}; use one of {', '.join(DATASETS)}")
        if len(table) != num_classes:
            raise RtsegError(f"class set {dataset!r} has {len(table)} classes, not {num_classes}; check --num-classes")
        return [n for n, _ in table], [list(c) for _, c in table]
    names = [f"class_{i}" for i in range(num_classes)]
    # Golden-ratio hue steps keep neighbouring ids apart in colour.
    palette = [[round(255 * v) for v in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95)]
               for i in range(num_classes)]
    return names, palette
