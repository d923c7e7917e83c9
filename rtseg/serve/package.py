"""A bundle that travels with the deployment: its verified bytes in Ray's object store, not a path on every node.

``rtseg serve BUNDLE`` checks every artifact against the manifest (:func:`pack`), reads the manifest and the
artifacts into memory and hands them to a small detached actor on the head node, named after the bundle's hash
(:func:`publish`): it outlives the serve command's own process (``--update`` runs as another one) and every worker
node. Each replica, on whichever node Serve places it, asks that actor for the bytes (they reach its node through
Ray's object store), writes them into a folder of its own, checks every file's sha256 against what the serve command
verified (:func:`fetch`) and loads the bundle from there. The bundle's folder may then change or disappear: a
replica started later (a node lost, a replica replaced) still gets the same bytes; a changed bundle is served only
after ``rtseg serve ... --update`` publishes it and Serve rolls the replicas over to it.

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
NAMESPACE = "rtseg"  # the Ray namespace of the bundle holders
PREFIX = "rtseg-bundle-"


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


class _Holder:
    """Holds one package in memory; replicas ask it for the bytes."""

    def __init__(self, package: Package):
        self.package = package

    def get(self) -> Package:
        return self.package


def holder_name(bundle_sha256: str) -> str:
    return PREFIX + bundle_sha256[:32]


def publish(package: Package) -> str:
    """The package in a detached actor on the head node (one per bundle hash: publishing again reuses it); returns
    the actor's name."""
    import ray

    name = holder_name(package.bundle_sha256)
    holder = ray.remote(_Holder).options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        resources={"node:__internal_head__": 0.001}, max_restarts=0)
    ray.get(holder.remote(package).get.remote())  # ready (and holding it) before any replica asks
    return name


def fetch(name: str) -> tuple[Path, str]:
    """In a replica: the package from its holder, written and checked on this node; (folder, bundle sha256)."""
    import ray

    package = ray.get(ray.get_actor(name, namespace=NAMESPACE).get.remote())
    return unpack(package), package.bundle_sha256


def withdraw(keep: str | None = None, only: str | None = None) -> None:
    """Kill the bundle holders (all, all but ``keep``, or ``only`` that one): when the service stops, an update has
    rolled out, or a start failed."""
    import ray

    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        space = entry.get("namespace") if isinstance(entry, dict) else NAMESPACE
        if space == NAMESPACE and name.startswith(PREFIX) and name != keep and only in (None, name):
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:  # gone already
                pass
