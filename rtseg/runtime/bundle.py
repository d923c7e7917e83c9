"""A bundle as the runtime sees it: the manifest checked, and every artifact checked against its sha256.

``rtseg.json`` is the promise that the graphs beside it were verified; the runtime holds export to it. Hashing a
large graph on every start would cost seconds, so a verified hash is remembered per file with its size and
modification time in ``.rtseg-verified.json`` (best effort: a read-only bundle is simply hashed each time).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError
from ..export.bundle import FAILED_MANIFEST, FORMAT_VERSION, MANIFEST, sha256_file, write_json

VERIFIED_CACHE = ".rtseg-verified.json"


@dataclass
class Bundle:
    root: Path
    manifest: dict

    def artifact_path(self, key: str) -> Path | None:
        """The file of artifact ``key`` ("onnx", "onnx_fp16", "engine"), or None where the bundle has none."""
        entry = (self.manifest.get("artifacts") or {}).get(key)
        return self.root / entry["file"] if entry else None

    @property
    def rebuild(self) -> str:
        from ..export.tensorrt import rebuild_command

        return rebuild_command(self.manifest, self.root)


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Read and check a bundle folder (or its ``rtseg.json``); artifacts are checked by :func:`check_artifact`."""
    path = Path(path)
    root = path if path.is_dir() else path.parent
    manifest_path = root / MANIFEST
    if not path.exists():
        raise RtsegError(f"no bundle at {path}; create one with: rtseg export ... --out {path}")
    if not manifest_path.is_file():
        if (root / FAILED_MANIFEST).is_file():
            raise RtsegError(f"{root} holds a bundle whose verification failed (see {FAILED_MANIFEST}); fix the"
                             f" export and run rtseg export again")
        raise RtsegError(f"{root} is not an rtseg bundle (no {MANIFEST}); create one with: rtseg export ... --out"
                         f" {root}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise RtsegError(f"{manifest_path} cannot be read ({str(exc)[:120]}); it may be half-written: run rtseg"
                         f" export again") from None
    if not isinstance(manifest, dict):
        raise RtsegError(f"{manifest_path} is not an rtseg manifest; run rtseg export again")
    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise RtsegError(f"{manifest_path} has format version {version}, written by a newer rtseg (this one reads"
                         f" {FORMAT_VERSION}); upgrade with: pip install -U rtseg")
    if version != FORMAT_VERSION:
        raise RtsegError(f"{manifest_path} has format version {version}, this rtseg reads {FORMAT_VERSION};"
                         f" re-export the bundle with rtseg export")
    for section in ("model", "input", "output", "artifacts"):
        if not isinstance(manifest.get(section), dict):
            raise RtsegError(f"{manifest_path} has no '{section}' section; it is not an rtseg bundle manifest")
    return Bundle(root, manifest)


def check_artifact(bundle: Bundle, key: str) -> Path:
    """The path of artifact ``key`` after checking that its bytes are the ones export verified."""
    entry = (bundle.manifest.get("artifacts") or {}).get(key)
    if not entry:
        raise RtsegError(f"the bundle {bundle.root} has no {key} artifact")
    path = bundle.root / entry["file"]
    if not path.is_file():
        raise RtsegError(f"{path} is missing from the bundle; rebuild it with: {bundle.rebuild}")
    if _hash(bundle.root, path) != entry.get("sha256"):
        raise RtsegError(f"{path.name} changed since the bundle was verified (its sha256 no longer matches"
                         f" {MANIFEST}); rebuild it with: {bundle.rebuild}")
    return path


def _hash(root: Path, path: Path) -> str:
    cache_path = root / VERIFIED_CACHE
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    entry = cache.get(path.name)
    if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(path)
    cache[path.name] = {"stamp": stamp, "sha256": digest}
    try:
        write_json(cache_path, cache)
    except OSError:
        pass  # a read-only bundle: hash again next time
    return digest
