"""How rtseg writes files: atomically (a temporary file beside the target, then a rename), and where it caches.

An interrupted or failed run must never leave a half-written file under the name a reader trusts, so every file
rtseg writes goes through :func:`atomic_path`. Caches (compiled kernels, TensorRT timing caches) live under
:func:`cache_dir`: ``$RTSEG_CACHE_DIR`` if set, else the platform's user cache folder (platformdirs).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # every temporary file rtseg makes is ``.<name>.<random>.tmp`` beside its target


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block finishes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def writable_dir(path: str | os.PathLike, failure: str) -> Path:
    """Create folder ``path`` and prove it is writable before any slow work; else one line from ``failure``, a
    format string with ``{path}`` and ``{why}`` (e.g. "cannot write to --out {path}: {why}; pass a writable
    folder")."""
    from .errors import RtsegError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".rtseg-write-test.", suffix=TEMP_SUFFIX):
            pass
    except OSError as exc:
        raise RtsegError(failure.format(path=path, why=exc.strerror or exc)) from None
    if not path.is_dir():
        raise RtsegError(failure.format(path=path, why="not a directory"))
    return path


def remove_if_empty(folder: Path) -> None:
    """Remove a folder a run created if an error left it empty (rtseg's temporary files aside)."""
    try:
        for p in folder.iterdir():
            if not (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)):
                return
            p.unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        pass


def cache_dir(*parts: str) -> Path:
    """rtseg's cache folder (not created): ``$RTSEG_CACHE_DIR/<parts>`` or the user cache dir's ``rtseg/<parts>``."""
    base = os.environ.get("RTSEG_CACHE_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("rtseg", appauthor=False)
    return Path(base, *parts)


def next_run_dir(command: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<command>/<N>``, N one more than the largest number already there (1 for the first run), as
    Ultralytics numbers its ``runs/`` folders; not created (the command creates it once it has something to
    write)."""
    base = Path(root) / command
    taken = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return base / str(max(taken, default=0) + 1)
