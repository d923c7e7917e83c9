"""The bundle directory: ``rtseg.json`` (the manifest), its artifacts, and the record of finished build steps.

``rtseg.json`` exists only for a bundle whose every gate passed: a runtime that finds it may trust the graphs.
Both manifests (``rtseg.json`` and the failure report ``rtseg.failed.json``) are removed when a run prepares the
folder, before any artifact is touched, and one of them is written last, atomically: a run that fails or is
interrupted leaves no manifest at all, whatever it overwrote. A run whose verification fails writes the same
document as ``rtseg.failed.json``, keeping the artifacts for inspection.

Each build step (ONNX export, FP16 conversion, engine build) is keyed by a hash of everything it depends on (its
inputs, the versions of the tools that run it and a digest of rtseg's own export and model code); the key and the
sha256 of its outputs are kept in ``.rtseg-steps.json``. A re-run with the same key and untouched outputs reuses the
step instead of redoing it; an upgrade of torch, onnx, ONNX Runtime, ModelOpt or rtseg redoes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .. import files
from ..errors import RtsegError
from ..files import TEMP_SUFFIX

# The package's one atomic-write helper (rtseg.files), under the names the export modules import from here.
atomic_path = files.atomic_path
write_json = files.write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "rtseg.json"
FAILED_MANIFEST = "rtseg.failed.json"
STEPS = ".rtseg-steps.json"
ONNX_FILE = "model.onnx"
FP16_FILE = "model.fp16.onnx"
ENGINE_FILE = "model.engine"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    """sha256 over rtseg's export and model code: a changed converter or model redoes the steps it feeds."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("export", "models"):
        for path in sorted((root / sub).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def tool_versions() -> dict[str, str | None]:
    """The versions of everything that shapes a step's output (installed or not)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    found = {"rtseg": __version__, "rtseg_code": code_digest()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxslim", "nvidia-modelopt", "onnxscript"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create the bundle directory, prove it is writable and remove its manifests, before any slow step runs."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".rtseg-write-test.", suffix=TEMP_SUFFIX):
            pass
    except OSError as exc:
        raise RtsegError(f"cannot write the bundle to {out}: {exc.strerror or exc}; pass a writable --out") from None
    if not out.is_dir():
        raise RtsegError(f"cannot write the bundle to {out}: not a directory; pass a writable --out")
    for name in (MANIFEST, FAILED_MANIFEST):  # from now on the folder's graphs may change: no stale promise
        (out / name).unlink(missing_ok=True)
    return out


def remove_if_empty(out: Path) -> None:
    """Remove a bundle folder this run created if an error left it empty (temporary files aside)."""
    try:
        for p in out.iterdir():
            if not (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)):
                return
            p.unlink(missing_ok=True)
        out.rmdir()
    except OSError:
        pass


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


def artifact(out: Path, name: str) -> dict:
    return {"file": name, "sha256": sha256_file(out / name)}


def write_manifest(out: Path, manifest: dict, passed: bool) -> Path:
    """Write ``rtseg.json`` for a verified bundle, else ``rtseg.failed.json`` (and drop a stale ``rtseg.json``)."""
    target = out / (MANIFEST if passed else FAILED_MANIFEST)
    (out / (FAILED_MANIFEST if passed else MANIFEST)).unlink(missing_ok=True)
    write_json(target, manifest)
    return target


def read_manifest(bundle: str | os.PathLike) -> dict:
    """Read a bundle's ``rtseg.json`` (``bundle`` is the directory or the file)."""
    path = Path(bundle)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        hint = " (its verification failed: see rtseg.failed.json)" if (path.parent / FAILED_MANIFEST).is_file() else ""
        raise RtsegError(f"no bundle manifest at {path}{hint}; create one with: rtseg export ... --out {path.parent}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise RtsegError(f"{path} is not valid JSON ({exc}); re-run rtseg export") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise RtsegError(f"{path} has format version {manifest.get('format_version')}, this rtseg reads"
                         f" {FORMAT_VERSION}; re-run rtseg export")
    return manifest
