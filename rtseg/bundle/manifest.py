"""``rtseg.json`` as types: :class:`Manifest` and its parts, built by export and read by everyone else.

The document on disk is :meth:`Manifest.to_dict` (key order included, so a re-export writes the same bytes);
:meth:`Manifest.from_dict` is the one place a manifest is validated, with one message per problem. A
:class:`Manifest` is also a read-only mapping over that document (``manifest["input"]["mean"]``), for code and
tests that read the JSON as JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RtsegError
from .format import ARTIFACT_FILES, FORMAT_VERSION
from .inputs import InputSpec
from .preprocessing import Preprocessing


@dataclass(frozen=True)
class Upsample:
    """The resize a graph's low-resolution logits still owe (``mode`` "bilinear"; "none" for a graph that does it)."""

    mode: str = "bilinear"
    align_corners: bool = False
    size: str = "input"

    def as_dict(self) -> dict:
        return {"mode": self.mode, "size": self.size, "align_corners": bool(self.align_corners)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Upsample | None:
        if not d:
            return None
        return cls(str(d.get("mode", "bilinear")), bool(d.get("align_corners", False)), str(d.get("size", "input")))


@dataclass(frozen=True)
class Artifact:
    file: str
    sha256: str

    def as_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class ModelMeta:
    """Which network, its classes (names and RGB palette) and where its weights came from."""

    name: str
    family: str
    num_classes: int
    class_names: list[str]
    palette: list[list[int]]
    source: dict = field(default_factory=dict)
    #: where the names and palette came from ("zoo entry NAME", "checkpoint NAME", "--classes", ...); None in
    #: bundles written before it was recorded (the key is then left out)
    class_source: str | None = None

    def as_dict(self) -> dict:
        doc = {"name": self.name, "family": self.family, "num_classes": self.num_classes,
               "class_names": list(self.class_names), "palette": [list(c) for c in self.palette]}
        if self.class_source is not None:
            doc["class_source"] = self.class_source
        return {**doc, "source": self.source}


@dataclass(frozen=True, eq=False)
class Manifest(Mapping):
    """A bundle's manifest: the model, its input (sizes and normalisation), its output, the artifacts with their
    sha256, the verification report and the build stamp."""

    model: ModelMeta
    input_name: str
    inputs: InputSpec
    preprocessing: Preprocessing
    output_name: str
    output_kind: str  # "logits" (low resolution, ``upsample`` owed) or "labels" (int32 at input size)
    upsample: Upsample | None
    artifacts: dict[str, Artifact | None]
    verification: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: where the normalisation came from ("zoo entry NAME", "checkpoint", "--mean/--std", ...); None: not recorded
    preprocessing_source: str | None = None

    # -- the document ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "model": self.model.as_dict(),
            "input": {"name": self.input_name, **self.inputs.as_dict(), "size_multiple": self.inputs.multiple,
                      **self.preprocessing.as_dict(),
                      **({"preprocessing_source": self.preprocessing_source} if self.preprocessing_source else {})},
            "output": {"name": self.output_name, "kind": self.output_kind,
                       "dtype": "float32" if self.output_kind == "logits" else "int32",
                       "upsample": self.upsample.as_dict() if self.output_kind == "logits" and self.upsample
                       else None},
            "artifacts": {k: (a.as_dict() if a else None) for k, a in self.artifacts.items()},
            "verification": self.verification,
            "build": self.build,
        }

    @functools.cached_property
    def _doc(self) -> dict:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._doc[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self._doc) == dict(other)

    __hash__ = None

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def passed(self) -> bool:
        return bool(self.verification.get("passed", False))

    @property
    def rebuild_command(self) -> str | None:
        return self.build.get("command") or None

    @property
    def trained_classes(self) -> list[int]:
        """The class ids the model was trained on: ``model.source.classes_trained`` (ids or names; the demo's 7 of
        its 19 outputs), else every class."""
        trained = self.model.source.get("classes_trained") if isinstance(self.model.source, dict) else None
        if not trained:
            return list(range(self.num_classes))
        names = list(self.model.class_names)
        return sorted({names.index(c) if isinstance(c, str) and c in names else int(c) for c in trained})

    @property
    def untrained(self) -> bool:
        """True for a bundle exported from a zoo model without weights (its predictions mean nothing)."""
        source = self.model.source
        return isinstance(source, dict) and "weights" in source and not source.get("weights") \
            and not source.get("onnx")

    def artifact(self, key: str) -> Artifact | None:
        return self.artifacts.get(key)

    # -- reading -----------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any, where: str | Path = "rtseg.json") -> Manifest:
        """Validate a parsed ``rtseg.json``; one :class:`RtsegError` line per problem, naming ``where``."""
        version = check_version(doc, where)
        for section in ("model", "input", "output", "artifacts"):
            if not isinstance(doc.get(section), dict):
                raise RtsegError(f"{where} has no '{section}' section; it is not an rtseg bundle manifest")
        m, inp, out = doc["model"], doc["input"], doc["output"]
        try:
            num_classes = int(m["num_classes"])
            names = list(m.get("class_names") or [f"class_{i}" for i in range(num_classes)])
            model = ModelMeta(str(m.get("name", "")), str(m.get("family", "")), num_classes, names,
                              [list(c) for c in (m.get("palette") or [])], m.get("source") or {},
                              _optional_text(m, "class_source"))
            artifacts = {}
            for key, entry in doc["artifacts"].items():
                artifacts[key] = Artifact(str(entry.get("file", ARTIFACT_FILES.get(key, key))),
                                          str(entry.get("sha256", ""))) if entry else None
            return cls(model=model, input_name=str(inp.get("name", "input")), inputs=InputSpec.from_manifest(inp),
                       preprocessing=Preprocessing.from_dict(inp), output_name=str(out.get("name", "logits")),
                       output_kind=str(out.get("kind", "logits")), upsample=Upsample.from_dict(out.get("upsample")),
                       artifacts=artifacts, verification=doc.get("verification") or {},
                       build=doc.get("build") or {}, format_version=version,
                       preprocessing_source=_optional_text(inp, "preprocessing_source"))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RtsegError(f"{where} is not a complete rtseg manifest ({type(exc).__name__}: {str(exc)[:80]});"
                             f" re-export the bundle with rtseg export") from None


def _optional_text(section: dict, key: str) -> str | None:
    """A key newer bundles write and older ones lack."""
    value = section.get(key)
    return None if value is None else str(value)


def check_version(doc: Any, where: str | Path) -> int:
    """The document's format version, if this rtseg reads it; else one line saying what to do."""
    if not isinstance(doc, dict):
        raise RtsegError(f"{where} is not an rtseg manifest; run rtseg export again")
    version = doc.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise RtsegError(f"{where} has format version {version}, written by a newer rtseg (this one reads"
                         f" {FORMAT_VERSION}); upgrade with: pip install -U rtseg")
    if version != FORMAT_VERSION:
        raise RtsegError(f"{where} has format version {version}, this rtseg reads {FORMAT_VERSION};"
                         f" re-export the bundle with rtseg export")
    return version
