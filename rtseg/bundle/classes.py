"""Class names and palettes written into a bundle's manifest, so a consumer can draw and label masks.

The declared class sets are :data:`DATASETS`: Cityscapes (19 train ids), Pascal VOC (21) and CelebAMask-HQ (19 face
parts, the order of zllrunning/face-parsing.PyTorch). A model's zoo entry or a catalogue checkpoint names its set;
``--classes`` names a set, a file of names (one a line) or names separated by commas. A class count is never
taken for a dataset: without a declaration the classes are ``class_<i>`` with a deterministic, well-spread palette.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

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

#: CelebAMask-HQ face parts in the label order of zllrunning/face-parsing.PyTorch (its ``face_dataset.py`` enumerates
#: the mask names from 1; 0 is everything unlabelled)
CELEBAMASK_NAMES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose", "mouth",
    "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
#: RGB per class: that repository's test.py ``part_colors`` (written there in OpenCV's BGR order) for classes 1..18;
#: it leaves the background unpainted, black here
CELEBAMASK_PALETTE = (
    (0, 0, 0), (0, 85, 255), (0, 170, 255), (85, 0, 255), (170, 0, 255), (0, 255, 0), (0, 255, 85), (0, 255, 170),
    (85, 255, 0), (170, 255, 0), (255, 0, 0), (255, 0, 85), (255, 0, 170), (255, 85, 0), (255, 170, 0),
    (0, 255, 255), (85, 255, 255), (170, 255, 255), (255, 0, 255),
)


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
CELEBAMASK = tuple(zip(CELEBAMASK_NAMES, CELEBAMASK_PALETTE))
DATASETS = {"cityscapes": CITYSCAPES, "voc": VOC, "celebamask": CELEBAMASK}
_SPEC_HELP = f"{', '.join(DATASETS)}, a file of names (one a line) or names separated by commas"


def class_table(num_classes: int, dataset: str | None = None) -> tuple[list[str], list[list[int]]]:
    """Names and RGB palette for ``num_classes``: from the class set ``dataset`` (a name of :data:`DATASETS`), else
    ``class_<i>`` names. The count must fit the set."""
    if dataset is None:
        return generic_names(num_classes), generic_palette(num_classes)
    table = DATASETS.get(dataset.lower())
    if table is None:
        raise RtsegError(f"unknown class set {dataset!r}; use one of {_SPEC_HELP}")
    if len(table) != num_classes:
        raise RtsegError(f"class set {dataset!r} has {len(table)} classes, not {num_classes}; check --num-classes")
    return [n for n, _ in table], [list(c) for _, c in table]


def generic_names(num_classes: int) -> list[str]:
    return [f"class_{i}" for i in range(num_classes)]


def generic_palette(num_classes: int) -> list[list[int]]:
    # Golden-ratio hue steps keep neighbouring ids apart in colour.
    return [[round(255 * v) for v in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95)]
            for i in range(num_classes)]


def check_class_spec(spec: str, flag: str = "--classes") -> str:
    """``spec`` if it can name classes (a set, an existing file or comma-separated names); else one line."""
    text = str(spec).strip()
    if not text:
        raise RtsegError(f"{flag}: empty; use {_SPEC_HELP}")
    if text.lower() in DATASETS or "," in text or Path(text).is_file():
        return text
    raise RtsegError(f"{flag} {spec!r}: not a class set or a file; use {_SPEC_HELP}")


def classes_from_spec(spec: str, num_classes: int, flag: str = "--classes") -> tuple[list[str], list[list[int]]]:
    """Names and palette from a ``--classes`` value: a set of :data:`DATASETS`, a names file or ``a,b,c``.

    Names from a file or a list get the generic palette. Blank names, duplicates and a count other than
    ``num_classes`` are one line each.
    """
    text = check_class_spec(spec, flag)
    if text.lower() in DATASETS:
        try:
            return class_table(num_classes, text)
        except RtsegError as exc:
            raise RtsegError(f"{flag} {text}: {exc}") from None
    if "," in text and not Path(text).is_file():
        names, where = [n.strip() for n in text.split(",")], f"{flag} {text!r}"
        if any(not n for n in names):
            raise RtsegError(f"{where}: an empty name (two commas in a row, or one at an end); name every class")
    else:
        try:
            lines = Path(text).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RtsegError(f"{flag} {text}: cannot read it as a UTF-8 text file ({type(exc).__name__})") from None
        while lines and not lines[-1].strip():
            lines.pop()  # a trailing newline or two is not a class
        names, where = [n.strip() for n in lines], f"{flag} {text}"
        if blank := [i + 1 for i, n in enumerate(names) if not n]:
            raise RtsegError(f"{where}: line {blank[0]} is blank; write one class name on each line, in label order")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise RtsegError(f"{where}: {name!r} appears twice (classes {seen[name]} and {i}); names must differ")
        seen[name] = i
    if len(names) != num_classes:
        raise RtsegError(f"{where} names {len(names)} classes but the model has {num_classes}; give one name per"
                         f" class, in label order")
    return names, generic_palette(num_classes)


def resolve_classes(num_classes: int, spec: str | None, declared: str | None,
                    declared_by: str) -> tuple[list[str], list[list[int]], str, str | None]:
    """``(names, palette, source, note)``: ``--classes`` if given, else the set ``declared_by`` declares (when the
    count fits it), else ``class_<i>`` with a note. Never a set guessed from the count."""
    if spec is not None:
        return (*classes_from_spec(spec, num_classes), "--classes", None)
    if declared is not None and len(DATASETS[declared]) == num_classes:
        return (*class_table(num_classes, declared), declared_by, None)
    why = (f"{declared_by} declares {declared} ({len(DATASETS[declared])} classes)" if declared
           else f"{declared_by} declares no class names")
    note = (f"note: {num_classes} classes named class_0..class_{num_classes - 1}: {why}; name them with --classes"
            f" {_SPEC_HELP}")
    return (*class_table(num_classes), "class_<i> (none declared)", note)
