"""The export's bookkeeping in a bundle folder: preparing it, and the record of finished build steps.

The format itself (names, manifest types, the one reader and writer) is :mod:`rtseg.bundle`. Here: ``rtseg.json``
and ``rtseg.failed.json`` are removed when a run prepares the folder, before any artifact is touched, and one of
them is written last, atomically (:func:`rtseg.bundle.write_manifest`): a run that fails or is interrupted leaves
no manifest at all, whatever it overwrote.

Each build step (ONNX export, FP16 conversion, engine build) is keyed by a hash of everything it depends on (its
inputs, the versions of the tools that run it and a digest of rtseg's own export, format and model code); the key
and the sha256 of its outputs are kept in ``.rtseg-steps.json``. A re-run with the same key and untouched outputs
reuses the step instead of redoing it; an upgrade of torch, onnx, ONNX Runtime, ModelOpt or rtseg redoes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

from ..bundle import FAILED_MANIFEST, MANIFEST, STEPS, Artifact
from ..files import remove_if_empty as remove_if_empty
from ..files import sha256_file, writable_dir, write_json


def array_digest(a) -> str:
    """sha256 of an array's bytes (C order): the identity of calibration frames in a step's key."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def hash_key(*parts) -> str:
    """A stable hash of JSON-able parts: the identity of a build step's inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def quiet_stdout():
    """Silence libraries that print to stdout (onnxslim's symbolic shape notes) while they run."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


@functools.cache
def code_digest() -> str:
    """sha256 over rtseg's export, format, scene and model code: a changed converter or model redoes the steps
    it feeds."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [p for sub in ("export", "models", "bundle") for p in (root / sub).rglob("*.py")] + [root / "scenes.py"]
    for path in sorted(files):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def tool_versions() -> dict[str, str | None]:
    """The versions of everything that shapes a step's output (installed or not)."""
    from .. import __version__
    from ..machine import package_versions

    return {"rtseg": __version__, "rtseg_code": code_digest(),
            **package_versions(("torch", "onnx", "onnxruntime", "onnxslim", "nvidia-modelopt", "onnxscript"))}


def prepare_out_dir(out) -> Path:
    """Create the bundle directory, prove it is writable and remove its manifests, before any slow step runs."""
    out = writable_dir(out, "cannot write the bundle to {path}: {why}; pass a writable --out")
    for name in (MANIFEST, FAILED_MANIFEST):  # from now on the folder's graphs may change: no stale promise
        (out / name).unlink(missing_ok=True)
    return out


class StepRecord:
    """Finished build steps of one bundle directory, for reuse across runs."""

    def __init__(self, out: Path):
        self.path = out / STEPS
        try:
            self.steps = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, ValueError):
            self.steps = {}

    def reusable(self, step: str, key: str, outputs: list[Path]) -> bool:
        """True when ``step`` last ran with ``key`` and its outputs are still the files it wrote."""
        entry = self.steps.get(step)
        if not entry or entry.get("key") != key:
            return False
        recorded = entry.get("outputs", {})
        return all(p.is_file() and recorded.get(p.name) == sha256_file(p) for p in outputs) and bool(outputs)

    def finish(self, step: str, key: str, outputs: list[Path], **extra) -> None:
        self.steps[step] = {"key": key, "outputs": {p.name: sha256_file(p) for p in outputs}, **extra}
        write_json(self.path, self.steps)

    def extra(self, step: str) -> dict:
        return {k: v for k, v in self.steps.get(step, {}).items() if k not in ("key", "outputs")}

    def forget(self, step: str) -> None:
        if self.steps.pop(step, None) is not None:
            write_json(self.path, self.steps)


def artifact(out: Path, name: str) -> Artifact:
    return Artifact(name, sha256_file(out / name))
