"""A bundle that travels with the deployment: its verified bytes in Ray's object store, not a path on every node.

``rtseg serve BUNDLE`` checks every artifact against the manifest on the head (:func:`pack`), reads the manifest
and the artifacts into memory and puts them into Ray's object store once (``ray.put``, owned by the serve process,
so the object lives as long as the service, whatever happens to the worker nodes). Each replica, on whichever node
Serve places it, fetches those bytes, writes them into a folder of its own on its node, checks every file's sha256
against what the head verified (:func:`unpack`) and loads the bundle from there. The bundle's folder on the head
may then change or disappear: a replica started later (a node lost, a replica replaced) still gets the same bytes;
a changed bundle is served only after ``rtseg serve ... --update`` packs it again.

The bundle's identity, ``bundle_sha256`` (in ``/info``), is the sha256 of its ``rtseg.json``: the manifest names
every artifact's sha256, so one hash names the whole bundle.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError

MANIFEST = "rtseg.json"


@dataclass(frozen=True)
class Package:
    """What travels: the files (relative name -> bytes) and the sha256 each must have at the replica."""

    files: dict[str, bytes]
    sha256: dict[str, str]
    bundle_sha256: str
    model: str

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def pack(bundle: str | os.PathLike, backend: str = "auto") -> Package:
    """Check the bundle's artifacts on this machine and read them (one line if any is missing or changed)."""
    from ..bundle import check_artifact, open_bundle

    opened = open_bundle(bundle)
    root = Path(opened.root)
    names = [MANIFEST]
    for key, entry in opened.manifest.artifacts.items():
        if entry is None:
            continue
        check_artifact(opened, key)  # the bytes export verified, or one line saying what to rebuild
        names.append(entry.file)
    files = {}
    for name in names:
        try:
            files[name] = (root / name).read_bytes()
        except OSError as exc:
            raise RtsegError(f"cannot read {root / name} ({exc.strerror or exc}); check the bundle folder") from None
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return Package(files, sha, sha[MANIFEST], opened.manifest.model.name)


def unpack(package: Package, parent: str | None = None) -> Path:
    """Write the package into a new folder on this node and check every file; returns the folder.

    A file whose bytes differ from what the head verified raises (the replica then fails to start and Serve says
    so) instead of serving another model."""
    folder = Path(tempfile.mkdtemp(prefix=f"rtseg-bundle-{package.bundle_sha256[:12]}-", dir=parent))
    for name, data in package.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        got = hashlib.sha256(target.read_bytes()).hexdigest()
        if got != package.sha256[name]:
            raise RuntimeError(f"{name} arrived with sha256 {got[:12]}..., the head verified"
                               f" {package.sha256[name][:12]}...; refusing to serve it")
    return folder
