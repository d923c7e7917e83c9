"""The files the table-driven cases (test_table.py) run against: a bundle, its broken copies, good and bad media."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np

from ..video.media import make_video, numbered_frame

_KEEP: list = []  # sockets the cases need open

# bundle variants: name -> how a copy of the good bundle is broken
BROKEN_BUNDLES = {
    "no-manifest": lambda b: (b / "rtseg.json").unlink(),
    "manifest-not-json": lambda b: (b / "rtseg.json").write_text("{ not json"),
    "manifest-empty": lambda b: (b / "rtseg.json").write_text(""),
    "manifest-a-list": lambda b: (b / "rtseg.json").write_text("[]"),
    "manifest-future": lambda b: _edit(b, format_version=999),
    "manifest-old": lambda b: _edit(b, format_version=0),
    "model-missing": lambda b: (b / "model.onnx").unlink(),
    "model-truncated": lambda b: _truncate(b / "model.onnx"),
    "model-flipped": lambda b: _flip(b / "model.onnx"),
    "model-a-folder": lambda b: ((b / "model.onnx").unlink(), (b / "model.onnx").mkdir()),
}


def _edit(bundle: Path, **fields) -> None:
    doc = json.loads((bundle / "rtseg.json").read_text())
    doc.update(fields)
    (bundle / "rtseg.json").write_text(json.dumps(doc))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def build_world(root: Path, good_bundle: Path) -> dict[str, str]:
    """Every path a case may name, as text: {name: path}."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {"d": str(root)}
    bundle = root / "bundle"
    shutil.copytree(good_bundle, bundle)
    paths["bundle"] = str(bundle)
    # as a real export records it: the command that made the bundle, --out naming where it was first written (a
    # broken copy must be rebuilt where it is, not there)
    _edit(bundle, build={**json.loads((bundle / "rtseg.json").read_text()).get("build", {}),
                         "command": f"rtseg export --model fast_scnn --num-classes 19 --out {good_bundle}"})
    for name, breaker in BROKEN_BUNDLES.items():
        copy = root / f"bundle-{name}"
        shutil.copytree(bundle, copy)
        breaker(copy)
        paths[f"bundle-{name}"] = str(copy)
    media = root / "media"
    media.mkdir()
    paths["clip"] = str(make_video(media / "clip.mp4", 6, (64, 96)))
    img = media / "frame.png"
    cv2.imwrite(str(img), numbered_frame(0, 64, 96))
    paths["image"] = str(img)
    (media / "empty.mp4").write_bytes(b"")
    paths["empty"] = str(media / "empty.mp4")
    (media / "text.mp4").write_text("this is not a video\n" * 50)
    paths["text"] = str(media / "text.mp4")
    (media / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    paths["noise-png"] = str(media / "noise.png")
    half = media / "half.png"
    data = img.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    paths["half-png"] = str(half)
    jpeg = cv2.imencode(".jpg", numbered_frame(1, 64, 96))[1].tobytes()
    (media / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # libjpeg would fill the lower half grey
    paths["truncated-jpeg"] = str(media / "cut.jpg")
    _masks_and_labels(media, paths)
    _two_layouts(media / "two-layouts", paths)
    (media / "emptydir").mkdir()
    paths["emptydir"] = str(media / "emptydir")
    (media / "textdir").mkdir()
    (media / "textdir" / "a.txt").write_text("x")
    paths["textdir"] = str(media / "textdir")
    fifo = media / "fifo"
    os.mkfifo(fifo)
    paths["fifo"] = str(fifo)
    paths["missing"] = str(media / "missing.mp4")
    paths["out"] = str(root / "out")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        paths["port"] = str(s.getsockname()[1])
    busy = socket.socket()  # a port in use for as long as the world lives (closed with the process)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    paths["busy"] = str(busy.getsockname()[1])
    _KEEP.append(busy)
    return paths


def _masks_and_labels(media: Path, paths: dict[str, str]) -> None:
    """A colour mask as rtseg run --colour-masks writes it (Cityscapes colours; building and pole are grey:
    (70, 70, 70) and (153, 153, 153)) and the class-id label of the same frame."""
    import cv2

    ids = np.full((32, 48), 2, np.uint8)  # building
    ids[:, 24:] = 5  # pole
    colours = np.array([[70, 70, 70]] * 5 + [[153, 153, 153]], np.uint8)
    for name, image in (("colour-masks", colours[ids][..., ::-1]), ("id-labels", ids)):
        (media / name).mkdir()
        cv2.imwrite(str(media / name / "000000.png"), image)
        paths[name] = str(media / name)


def _two_layouts(root: Path, paths: dict[str, str]) -> None:
    """A folder that is both a VOC set (JPEGImages/ + SegmentationClass/) and a pairs set (images/ + labels/)."""
    import cv2

    for images, labels, suffix in (("JPEGImages", "SegmentationClass", ".jpg"), ("images", "labels", ".png")):
        (root / images).mkdir(parents=True)
        (root / labels).mkdir()
        cv2.imwrite(str(root / images / f"a{suffix}"), numbered_frame(0, 64, 96))
        cv2.imwrite(str(root / labels / "a.png"), np.zeros((64, 96), np.uint8))
    paths["two-layouts"] = str(root)
