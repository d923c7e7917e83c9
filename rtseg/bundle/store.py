"""A bundle folder on disk: the one reader of ``rtseg.json``, its writer, and the artifact check.

``rtseg.json`` is the promise that the graphs beside it were verified; every consumer holds export to it through
:func:`check_artifact`. Hashing a large graph on every start would cost seconds, so a verified hash is remembered
per file in ``.rtseg-verified.json`` together with the file's identity (size, modification and change times,
inode), so a file rewritten in place is hashed again (best effort: a read-only bundle is simply hashed each time).
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError
from ..files import sha256_file, write_json
from .format import FAILED_MANIFEST, MANIFEST, VERIFIED_CACHE
from .manifest import Manifest, check_version


def rebuild_command(manifest: Manifest | dict, root: Path) -> str:
    """The command that rebuilds the bundle here: the one recorded in the manifest, forced, with its ``--out`` set
    to ``root`` (a copied or moved bundle is rebuilt where it is, never into the folder it was first exported to)."""
    recorded = (manifest.get("build") or {}).get("command")
    try:
        parts = shlex.split(recorded) if recorded else ["rtseg", "export", "..."]
    except ValueError:  # an unbalanced quote: not a command line
        parts = ["rtseg", "export", "..."]
    parts = [p for p in parts if not p.startswith("--out=")]
    if "--out" in parts[:-1]:
        parts[parts.index("--out") + 1] = str(root)
    else:
        parts = [p for p in parts if p != "--out"] + ["--out", str(root)]
    if "--force" not in parts:
        parts.append("--force")
    return " ".join(p if p == "..." else shlex.quote(p) for p in parts)


@dataclass
class Bundle:
    """A bundle folder and its validated manifest."""

    root: Path
    manifest: Manifest

    def artifact_path(self, key: str) -> Path | None:
        """The file of artifact ``key`` ("onnx", "onnx_fp16", "engine"), or None where the bundle has none."""
        entry = self.manifest.artifact(key)
        return self.root / entry.file if entry else None

    @property
    def rebuild(self) -> str:
        return rebuild_command(self.manifest, self.root)


def read_document(path: str | os.PathLike) -> tuple[Path, dict]:
    """(bundle folder, parsed ``rtseg.json``) of a folder or its manifest path; the format version is checked
    here, the sections by :meth:`Manifest.from_dict` (:func:`open_bundle` does both)."""
    path = Path(path)
    root = path if path.is_dir() else path.parent
    manifest_path = root / MANIFEST
    if not path.exists():
        raise RtsegError(f"no bundle at {path} (no bundle manifest there); create one with: rtseg export ... --out"
                         f" {path}")
    if not path.is_dir() and path.name != MANIFEST:
        raise RtsegError(f"{path} is a file, not a bundle: pass the bundle folder rtseg export wrote (the one"
                         f" holding {MANIFEST}), or make one from it with: rtseg export ... --out DIR")
    if not manifest_path.is_file():
        if (root / FAILED_MANIFEST).is_file():
            raise RtsegError(f"{root} holds a bundle whose verification failed (see {FAILED_MANIFEST}); fix the"
                             f" export and run rtseg export again")
        raise RtsegError(f"{root} is not an rtseg bundle (no bundle manifest {MANIFEST}); create one with: rtseg"
                         f" export ... --out {root}")
    try:
        doc = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise RtsegError(f"{manifest_path} cannot be read ({str(exc)[:120]}); it may be half-written: run rtseg"
                         f" export again") from None
    check_version(doc, manifest_path)
    return root, doc


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Read and validate a bundle folder (or its ``rtseg.json``); artifacts are checked by :func:`check_artifact`."""
    root, doc = read_document(path)
    return Bundle(root, Manifest.from_dict(doc, root / MANIFEST))


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The validated manifest of a bundle folder (or of its ``rtseg.json``)."""
    return open_bundle(path).manifest


def write_manifest(out: Path, manifest: Manifest, passed: bool) -> Path:
    """Write ``rtseg.json`` for a verified bundle, else ``rtseg.failed.json`` (and drop a stale ``rtseg.json``)."""
    target = out / (MANIFEST if passed else FAILED_MANIFEST)
    (out / (FAILED_MANIFEST if passed else MANIFEST)).unlink(missing_ok=True)
    write_json(target, manifest.to_dict())
    return target


def check_artifact(bundle: Bundle, key: str) -> Path:
    """The path of artifact ``key`` after checking that its bytes are the ones export verified."""
    entry = bundle.manifest.artifact(key)
    if not entry:
        raise RtsegError(f"the bundle {bundle.root} has no {key} artifact")
    path = bundle.root / entry.file
    if not path.is_file():
        raise RtsegError(f"{path} is missing from the bundle; rebuild it with: {bundle.rebuild}")
    if artifact_sha256(bundle.root, path) != entry.sha256:
        raise RtsegError(f"{path.name} changed since the bundle was verified (its sha256 no longer matches"
                         f" {MANIFEST}); rebuild it with: {bundle.rebuild}")
    return path


def artifact_sha256(root: Path, path: Path) -> str:
    """sha256 of a bundle file, from the verified cache when the file is provably the one hashed before."""
    cache_path = root / VERIFIED_CACHE
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
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
