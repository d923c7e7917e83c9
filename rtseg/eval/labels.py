"""Label maps from disk, and the id tables of the datasets rtseg reads.

Label PNGs come in three shapes and each is read for what it is, which is where other tools go wrong:

- single channel ids (``L``, ``I;16``, ``I``): the values are the ids;
- palette PNGs (``P``, Pascal VOC's ``SegmentationClass``): the palette *indices* are the ids; converting to RGB
  first (what ``cv2.imread`` does) turns them into colours and every pixel into a wrong class;
- RGB where all three channels are equal: a grey id map saved as colour, read as ids. RGB with colours is not a
  label map (a Cityscapes ``*_color.png``, a VOC PNG re-saved as RGB) and is an error naming the fix.

Predicted masks (``--pred``) are read the same way, with one addition: a colour mask (``rtseg run --colour-masks``)
is mapped back to ids through the bundle's or the class set's palette when every pixel is one of its colours; it
is never read as grey ids (pole's (153, 153, 153) would be "class 153").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RtsegError, require

# Cityscapes (cityscapesScripts labels.py): label id -> train id for ids 0..33; everything else is ignored.
# License plate has id -1, which a uint8 PNG stores as 255: it is ignored too.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                        25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
CITYSCAPES_MAX_LABEL_ID = 33
# CamVid in the SegNet layout: 11 classes, id 11 is "Unlabelled" and is ignored.
CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
                  "pedestrian", "bicyclist"]
CAMVID_UNLABELLED = 11
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv/monitor"]


def _open(path: Path) -> tuple[str, np.ndarray]:
    Image = require("PIL.Image", "eval", "Pillow")
    try:
        with Image.open(path) as img:
            return img.mode, np.asarray(img)
    except (OSError, ValueError) as exc:
        raise RtsegError(f"cannot read the label image {path}: {exc}") from None


COLOUR_MASK_FIX = ("rtseg run --colour-masks writes colour masks to DIR/colour/ for viewing; score the class-id masks"
                   " beside them (--pred DIR, as rtseg run --save-masks DIR writes them)")


def read_prediction(path: Path, num_classes: int, palette: np.ndarray | None = None,
                    palette_from: str = "") -> tuple[np.ndarray, bool]:
    """A predicted mask as ``(int64 ids, read through the palette)``. Class-id masks are read as :func:`read_label`
    reads labels. An RGB mask is a colour mask (``rtseg run --colour-masks``) and is mapped back to ids through
    ``palette`` only where that is unambiguous: every pixel is one of its colours (distinct colours), and the
    mask does not also read as valid grey ids that differ. Anything else is one line naming the class-id masks."""
    mode, data = _open(path)
    if mode not in ("RGB", "RGBA") or data.ndim != 3:
        return _ids(path, mode, data, "rtseg run --save-masks writes single-channel class ids"), False
    rgb = data[..., :3]
    grey = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    as_grey = rgb[..., 0].astype(np.int64) if grey and int(rgb[..., 0].max()) < num_classes else None
    as_palette = _through_palette(rgb, palette) if palette is not None else None
    if as_grey is not None and (as_palette is None or np.array_equal(as_grey, as_palette)):
        return as_grey, False
    if as_palette is not None and as_grey is None:
        return as_palette, True
    if as_palette is not None:
        why = f"reads both as grey class ids and as {palette_from}'s colours, and they differ"
    elif palette is not None:
        why = f"holds colours that are not in {palette_from}"
    else:
        why = "is a colour (RGB) image, not a mask of class ids (no bundle or class set gives its palette)"
    raise RtsegError(f"{path} looks like a colour mask: it {why}; {COLOUR_MASK_FIX}")


def _through_palette(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray | None:
    """Ids of an RGB image whose every pixel is one of ``palette``'s (K, 3) colours; None otherwise."""
    keys = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    if len(np.unique(keys)) != len(keys):
        return None  # two classes share a colour: the colour cannot say which
    order = np.argsort(keys)
    sorted_keys = keys[order]
    pixels = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    at = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(keys) - 1)
    if not np.array_equal(sorted_keys[at], pixels):
        return None
    return order[at].astype(np.int64)


def read_label(path: Path, fix: str = "") -> np.ndarray:
    """A label PNG as an int64 ``(H, W)`` id map (palette indices for ``P`` images); ``fix`` is said on RGB."""
    mode, data = _open(path)
    return _ids(path, mode, data, fix)


def _ids(path: Path, mode: str, data: np.ndarray, fix: str) -> np.ndarray:
    if mode in ("P", "L", "I;16", "I;16B", "I;16L", "I", "1"):
        return data.astype(np.int64)
    if mode in ("RGB", "RGBA") and data.ndim == 3:
        rgb = data[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0].astype(np.int64)
        hint = fix or "save the labels as single-channel class ids or as a palette PNG"
        raise RtsegError(f"{path} is an RGB colour image, not a label map of class ids; {hint}")
    if mode == "LA":
        return data[..., 0].astype(np.int64)
    raise RtsegError(f"{path} has image mode {mode}, not a label map; save it as single-channel class ids")


def cityscapes_train_ids(label_ids: np.ndarray, ignore_index: int, where: Path) -> np.ndarray:
    """Cityscapes label ids (-1, 0..33; -1 stored as 255 in uint8 PNGs) -> train ids 0..18, the rest ``ignore_index``."""
    bad = (label_ids > CITYSCAPES_MAX_LABEL_ID) & (label_ids != 255)
    if bad.any():
        value = int(label_ids[bad][0])
        raise RtsegError(f"{where} holds label id {value}, outside Cityscapes' -1..33 (an instanceIds or colour"
                         f" image?); use the *_gtFine_labelIds.png or *_gtFine_labelTrainIds.png files")
    table = np.full(256, ignore_index, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label_id] = train_id
    return table[np.where(label_ids < 0, 255, label_ids)]


def camvid_ids(labels: np.ndarray, ignore_index: int, where: Path | None = None) -> np.ndarray:
    """CamVid SegNet ids 0..10 kept, 11 (Unlabelled) -> ``ignore_index``."""
    return np.where(labels == CAMVID_UNLABELLED, ignore_index, labels)
