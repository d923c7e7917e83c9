"""What a weights file really is, from its first bytes, so a wrong file gets one line that says what to do.

Users pass all sorts of files as ``--weights model.pth`` or ``--onnx model.onnx``: an HTML page saved from a
download link, a Git LFS pointer, an empty or truncated download, a NumPy array, a JSON file, a TorchScript archive,
a Caffe ``.caffemodel``, an ONNX graph. PyTorch's own message for these is cut mid-sentence, or suggests
``weights_only=False`` (which would run arbitrary code from the file; rtseg never does that). :func:`identify` looks
at the content (never just the suffix) and names the kind; nothing heavy is imported.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsegError

_HEAD = 4096


@dataclass(frozen=True)
class FileKind:
    """``name`` is a short id (``pytorch``, ``torchscript``, ``onnx``, ``caffemodel``, ``html``, ...)."""

    name: str
    what: str  # "an HTML page", for messages
    todo: str = ""  # what to do instead, for messages


PYTORCH = FileKind("pytorch", "a PyTorch checkpoint")
PICKLE = FileKind("pickle", "a pickle (a legacy PyTorch checkpoint?)")
ONNX = FileKind("onnx", "an ONNX model", "pass it with --onnx FILE (and --num-classes) instead of --model/--weights")
CAFFEMODEL = FileKind("caffemodel", "a Caffe .caffemodel")
_FROM_BROWSER = "the download saved a web page; download the file itself (the raw or direct link)"


def identify(path: str | os.PathLike) -> FileKind:
    """The kind of the file at ``path`` (which must exist), judged from its content."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return FileKind("empty", "an empty file (0 bytes)", "the download or copy did not finish; fetch it again")
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if head.startswith(b"version https://git-lfs"):
        return FileKind("lfs", "a Git LFS pointer, not the file itself",
                        "run 'git lfs pull' in its repository (or download the file from the LFS host)")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    if head.startswith(b"\x93NUMPY"):
        return FileKind("numpy", "a NumPy array (.npy)", "load it into the model and save model.state_dict() with"
                                                         " torch.save")
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return PICKLE
    if path.suffix.lower() == ".caffemodel":
        return CAFFEMODEL
    if _looks_like_onnx(head):
        return ONNX
    text = _as_text(head)
    if text is not None:
        return _text_kind(path, text, size)
    return FileKind("unknown", "not a file rtseg recognises (no PyTorch, ONNX or Caffe content)")


def _zip_kind(path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return FileKind("truncated", "a truncated or damaged zip archive (an interrupted download?)",
                        "fetch the file again and compare its size or checksum with the source")
    base = {n.split("/", 1)[-1] for n in names}
    if "data.pkl" in base and ("constants.pkl" in base or any(n.startswith("code/") for n in base)):
        return FileKind("torchscript", "a TorchScript archive (torch.jit.save), not a state_dict",
                        "load it with torch.jit.load and save its .state_dict() with torch.save")
    if "data.pkl" in base:
        return PYTORCH
    if names and all(n.endswith(".npy") for n in names):
        return FileKind("numpy", "a NumPy archive (.npz)", "load the arrays into the model and save"
                                                           " model.state_dict() with torch.save")
    return FileKind("zip", "a zip archive that is not a PyTorch checkpoint", "unpack it and pass the checkpoint")


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with ir_version (field 1, varint: 0x08, a small version), then producer, graph, ...
    return len(head) > 3 and head[0] == 0x08 and 3 <= head[1] <= 20 and head[2] in (0x12, 0x1a, 0x22, 0x2a, 0x3a)


def _as_text(head: bytes) -> str | None:
    if b"\0" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut = 0 < exc.start and exc.start >= len(head) - 3  # only a multibyte character cut by the read
        return head[:exc.start].decode("utf-8") if cut else None


def _text_kind(path: Path, text: str, size: int) -> FileKind:
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<?xml")) or "<html" in start[:1000]:
        return FileKind("html", "an HTML page, not a model", _FROM_BROWSER)
    if start.startswith(("{", "[")):
        try:
            if size <= 50 << 20:
                json.loads(path.read_text(errors="replace"))
            return FileKind("json", "a JSON file, not a model", "pass the model's weights file (.pth or .onnx)")
        except ValueError:
            pass
    if path.suffix.lower() == ".prototxt" or start.startswith(("name:", "layer {", "layers {", "input:")):
        return FileKind("prototxt", "a Caffe network definition (.prototxt) without weights",
                        "pass the .caffemodel holding the weights")
    return FileKind("text", "a text file, not a model", "pass the model's weights file (.pth or .onnx)")


def describe(path: str | os.PathLike, kind: FileKind) -> str:
    """``"<path>: it is <what>; <todo>"``: the one-line message for a file of the wrong kind."""
    return f"{path}: it is {kind.what}" + (f"; {kind.todo}" if kind.todo else "")


def check_onnx_file(path: str | os.PathLike) -> None:
    """Refuse a file passed as ``--onnx`` that is recognisably something else (an empty file, a checkpoint, ...)."""
    kind = identify(path)
    if kind.name in ("onnx", "unknown"):
        return  # an ONNX graph, or protobuf bytes the ONNX reader will judge
    if kind.name in ("pytorch", "pickle"):
        kind = FileKind(kind.name, kind.what, "pass it with --model NAME --weights FILE instead of --onnx")
    raise RtsegError(f"cannot read --onnx {describe(path, kind)}")
