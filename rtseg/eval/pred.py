"""``rtseg eval --pred MASKS --labels LABELS``: two folders of single-channel class-id PNGs, no images needed.

Masks and labels are matched by file stem, else by position (``rtseg run --save-masks`` numbers its masks
``000000.png``...). Class names and count come from a bundle (its manifest only: nothing is loaded) or from
``--classes`` (cityscapes, voc, a file of names one a line, or ``a,b,c``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RtsegError
from .readers import Dataset, Sample


def class_names(spec: str | None, bundle: str | None) -> tuple[list[str] | None, list[int] | None]:
    """``(names, trained)``: the classes from ``--classes`` or the bundle's manifest (None, None: neither given);
    ``trained`` is the ids the bundle was trained on where its manifest records them."""
    if spec:
        return _from_spec(spec), None
    if not bundle:
        return None, None
    from ..bundle import read_manifest

    m = read_manifest(bundle)
    names = list(m.model.class_names)
    recorded = m.model.source.get("classes_trained") if isinstance(m.model.source, dict) else None
    trained = sorted(names.index(c) if c in names else int(c) for c in recorded) if recorded else None
    return names, trained


def mask_palette(spec: str | None, bundle: str | None, layout: str) -> tuple[np.ndarray | None, str]:
    """``(RGB (K, 3) palette, where it came from)`` to read colour masks with: the bundle's (what ``rtseg run
    --colour-masks`` drew with), else the class set of ``--classes`` or of the layout; ``(None, "")`` without one."""
    from ..bundle.classes import DATASETS

    if bundle:
        from ..bundle import read_manifest

        palette = read_manifest(bundle).model.palette
        if palette:
            return np.asarray(palette, np.uint8).reshape(-1, 3), f"the palette of the bundle {bundle}"
    for name in ((spec or "").strip().lower(), layout):
        if name in DATASETS:
            return np.asarray([c for _, c in DATASETS[name]], np.uint8), f"the {name} palette"
    return None, ""


def _from_spec(spec: str) -> list[str]:
    from ..bundle import class_table
    from ..bundle.classes import DATASETS

    text = spec.strip()
    if text.lower() in DATASETS:
        return class_table(len(DATASETS[text.lower()]), text.lower())[0]
    if Path(text).is_file():
        try:
            names = [line.strip() for line in Path(text).read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise RtsegError(f"--classes {text}: cannot read it as a text file ({type(exc).__name__})") from None
        while names and not names[-1]:
            names.pop()
    elif "," in text:
        names = [n.strip() for n in text.split(",")]
    else:
        raise RtsegError(f"--classes {spec}: not {', '.join(DATASETS)}, a file of names or names separated by"
                         f" commas")
    if not names or not all(names) or len(set(names)) != len(names):
        raise RtsegError(f"--classes {spec}: give every class one distinct, non-empty name, in label order")
    return names


def labels_dataset(labels: str | Path, names: list[str] | None, ignore_index: int) -> Dataset:
    """The ``--labels`` folder as a set of samples (no images), sorted by file name."""
    root = Path(labels)
    if not root.is_dir():
        raise RtsegError(f"--labels {root} is not a folder; pass the folder of label PNGs (class ids)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    if not files:
        raise RtsegError(f"--labels {root} holds no .png labels; pass the folder of label PNGs (class ids)")
    return Dataset("labels", root, [Sample(p.stem, p, p) for p in files], names, ignore_index)


def check_classes_match(names: list[str], ds: Dataset, where: str) -> str | None:
    """A warning where the model's classes are not the set's (same count, other names), else None."""
    if not ds.class_names or list(ds.class_names) == list(names):
        return None
    differ = [f"{i}: {a} / {b}" for i, (a, b) in enumerate(zip(names, ds.class_names)) if a != b]
    return (f"rtseg: warning: {where}'s classes are not the {ds.layout} set's ({len(differ)} of {len(names)} differ,"
            f" e.g. {'; '.join(differ[:3])}); the scores compare different things")
