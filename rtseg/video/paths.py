"""Where a command reads its bundle and writes its files: a bundle folder one level down is found (with a note),
and outputs go to ``runs/<command>/<N>/`` unless ``--out`` names a folder."""

from __future__ import annotations

import sys
from pathlib import Path

MANIFEST = "rtseg.json"


def resolve_bundle(path: str | Path, say=None) -> Path:
    """``path`` if it holds a bundle; else the one bundle folder directly inside it (``runs/demo`` ->
    ``runs/demo/bundle``), with a note on stderr. Anything else is left for the loader to explain."""
    path = Path(path)
    if not path.is_dir() or (path / MANIFEST).is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
    if len(found) != 1:
        return path
    (say or _note)(f"rtseg: note: {path} is not a bundle; using the bundle inside it, {found[0]}")
    return found[0]


def output_dir(command: str, out: str | Path | None) -> Path:
    """``--out`` as given, else the next ``runs/<command>/<N>`` (not created)."""
    if out is not None:
        return Path(out)
    from ..files import next_run_dir

    return next_run_dir(command)


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
