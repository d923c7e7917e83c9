"""Evaluation sets on disk: pairs of an image and its label map, in the layouts people download.

- ``cityscapes``: ``leftImg8bit/<split>/<city>/X_leftImg8bit.png`` with ``gtFine/<split>/<city>/X_gtFine_labelTrainIds.png``
  (used as they are) or ``X_gtFine_labelIds.png`` (label ids mapped to the 19 train ids, the rest ignored);
- ``camvid``: the SegNet layout, ``<split>/X.png`` with ``<split>annot/X.png``, class 11 (Unlabelled) ignored;
- ``voc``: ``JPEGImages/X.jpg`` with the palette PNG ``SegmentationClass/X.png`` (indices, 255 borders ignored),
  restricted to ``ImageSets/Segmentation/<split>.txt`` where that list exists;
- ``pairs``: ``images/X.*`` with ``labels/X.png`` (or ``masks/``, ``annotations/``), ids used as they are.

``--split`` keeps the samples under a folder of that name (Cityscapes, CamVid) or the VOC list of that name.
Samples are sorted by image path: that is also the order ``rtseg run DIR --save-masks`` numbers its masks in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RtsegError
from . import labels as lab

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
LAYOUTS = ("auto", "cityscapes", "camvid", "voc", "pairs")
PAIR_LABEL_DIRS = ("labels", "masks", "annotations")


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path


@dataclass
class Dataset:
    """The samples of one set, its classes where the layout fixes them, and how to read its labels."""

    layout: str
    root: Path
    samples: list[Sample]
    class_names: list[str] | None  # None: the layout does not fix the classes (pairs)
    ignore_index: int
    convert: Callable[[np.ndarray, int, Path], np.ndarray] | None = field(default=None, repr=False)
    rgb_fix: str = ""

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    def read_label(self, sample: Sample) -> np.ndarray:
        """The sample's label map as int64 class ids, ``ignore_index`` where not labelled."""
        ids = lab.read_label(sample.label, self.rgb_fix)
        return self.convert(ids, self.ignore_index, sample.label) if self.convert else ids


def open_dataset(root: str | Path, layout: str = "auto", ignore_index: int = 255, split: str | None = None) -> Dataset:
    """Find the samples under ``root`` in ``layout`` (``auto``: recognised from the folder names)."""
    root = Path(root)
    if not root.is_dir():
        raise RtsegError(f"--data {root} is not a folder; pass the dataset's root folder")
    if layout not in LAYOUTS:
        raise RtsegError(f"unknown layout {layout!r}; pass --layout one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)
    reader = {"cityscapes": _cityscapes, "camvid": _camvid, "voc": _voc, "pairs": _pairs}[layout]
    ds = reader(root, ignore_index, split)
    if not ds.samples:
        where = f" in split {split!r}" if split else ""
        raise RtsegError(f"no image/label pairs found under {root} in the {layout} layout{where}; check --data,"
                         f" --layout and --split")
    ds.samples.sort(key=lambda s: str(s.image))
    return ds


class AmbiguousLayout(RtsegError):
    """``--data`` holds the folders of two layouts: reading either one silently would score the wrong set."""


def detect_layout(root: Path) -> str:
    names = {p.name for p in root.iterdir() if p.is_dir()}
    found = {}  # layout -> the folders that gave it away
    if {"leftImg8bit", "gtFine"} <= names or next(root.rglob("*_leftImg8bit.png"), None):
        found["cityscapes"] = "leftImg8bit/+gtFine/"
    if "SegmentationClass" in names or (root / "VOC2012" / "SegmentationClass").is_dir():
        found["voc"] = "SegmentationClass/"
    if annot := sorted(f"{n}annot" for n in names if f"{n}annot" in names):
        found["camvid"] = f"{annot[0][:-len('annot')]}/+{annot[0]}/"
    if "images" in names and names & set(PAIR_LABEL_DIRS):
        found["pairs"] = f"images/+{sorted(names & set(PAIR_LABEL_DIRS))[0]}/"
    if len(found) > 1:
        both = " and ".join(f"the {layout} layout ({folders})" for layout, folders in found.items())
        raise AmbiguousLayout(f"{root} holds {both}; pick one with {' or '.join(f'--layout {k}' for k in found)}")
    if found:
        return next(iter(found))
    raise RtsegError(f"cannot tell the layout of {root} (no leftImg8bit/gtFine, SegmentationClass, <split>annot or"
                     f" images/+labels/ folders); pass --layout cityscapes|camvid|voc|pairs")


def _in_split(path: Path, root: Path, split: str | None) -> bool:
    return split is None or split in path.relative_to(root).parts[:-1]


def _cityscapes(root: Path, ignore_index: int, split: str | None) -> Dataset:
    train_ids, label_ids = {}, {}
    for p in root.rglob("*_gtFine_labelTrainIds.png"):
        train_ids[p.name[: -len("_gtFine_labelTrainIds.png")]] = p
    for p in root.rglob("*_gtFine_labelIds.png"):
        label_ids[p.name[: -len("_gtFine_labelIds.png")]] = p
    # One conversion for the whole set: mixing train ids and label ids would silently score garbage.
    use_train_ids = bool(train_ids)
    found = train_ids if use_train_ids else label_ids
    samples, missing = [], []
    for image in root.rglob("*_leftImg8bit.png"):
        if not _in_split(image, root, split):
            continue
        stem = image.name[: -len("_leftImg8bit.png")]
        if stem in found:
            samples.append(Sample(stem, image, found[stem]))
        else:
            missing.append(image)
    if missing and samples:
        raise RtsegError(f"{len(missing)} Cityscapes images have no gtFine label (first: {missing[0]}); give"
                         f" every image its *_gtFine_{'labelTrainIds' if use_train_ids else 'labelIds'}.png")
    convert = None if use_train_ids else lab.cityscapes_train_ids
    return Dataset("cityscapes", root, samples, list(lab.CITYSCAPES_CLASSES), ignore_index, convert,
                   "use the *_gtFine_labelIds.png or *_gtFine_labelTrainIds.png files, not *_color.png")


def _camvid(root: Path, ignore_index: int, split: str | None) -> Dataset:
    samples = []
    for annot in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("annot")):
        images = root / annot.name[: -len("annot")]
        if split is not None and images.name != split:
            continue
        if not images.is_dir():
            raise RtsegError(f"{annot} has no image folder {images} beside it; CamVid's SegNet layout pairs"
                             f" <split>/ with <split>annot/")
        samples += _match(images, annot, f"CamVid {images.name}")
    return Dataset("camvid", root, samples, list(lab.CAMVID_CLASSES), ignore_index, lab.camvid_ids,
                   "CamVid's SegNet layout stores class ids 0..11 in single-channel PNGs")


def _voc(root: Path, ignore_index: int, split: str | None) -> Dataset:
    if not (root / "SegmentationClass").is_dir() and (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    labels, images = root / "SegmentationClass", root / "JPEGImages"
    if not images.is_dir():
        raise RtsegError(f"{root} has SegmentationClass/ but no JPEGImages/; pass the VOC2012 folder as --data")
    listing = root / "ImageSets" / "Segmentation" / f"{split or 'val'}.txt"
    if listing.is_file():
        names = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        samples = []
        for name in names:
            image = _find_image(images, name)
            if image is None or not (labels / f"{name}.png").is_file():
                raise RtsegError(f"{listing} lists {name}, which has no image in JPEGImages/ or no label in"
                                 f" SegmentationClass/; fix the list or the folders")
            samples.append(Sample(name, image, labels / f"{name}.png"))
    elif split is not None:
        raise RtsegError(f"no split list {listing}; pass an existing --split or none to use every labelled image")
    else:
        samples = _match(images, labels, "VOC")
    return Dataset("voc", root, samples, list(lab.VOC_CLASSES), ignore_index, None,
                   "VOC labels are palette PNGs; use the original SegmentationClass files, not RGB copies")


def _pairs(root: Path, ignore_index: int, split: str | None) -> Dataset:
    label_dir = next((root / d for d in PAIR_LABEL_DIRS if (root / d).is_dir()), None)
    if not (root / "images").is_dir() or label_dir is None:
        raise RtsegError(f"{root} needs images/ and labels/ (or masks/, annotations/) folders for --layout pairs")
    return Dataset("pairs", root, _match(root / "images", label_dir, "pairs"), None, ignore_index)


def _find_image(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in IMAGE_SUFFIXES if (folder / f"{stem}{s}").is_file()), None)


def _match(images: Path, labels: Path, what: str) -> list[Sample]:
    """Images and labels paired by file stem; an image without a label, or the reverse, is an error."""
    image_files = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    label_files = {p.stem: p for p in labels.iterdir() if p.suffix.lower() == ".png"}
    if image_files.keys() != label_files.keys():
        only_images = sorted(image_files.keys() - label_files.keys())
        only_labels = sorted(label_files.keys() - image_files.keys())
        first = (f"{images / only_images[0]}.* has no label in {labels}" if only_images
                 else f"{labels / only_labels[0]}.png has no image in {images}")
        raise RtsegError(f"{what}: images and labels do not match ({len(only_images)} images without a label,"
                         f" {len(only_labels)} labels without an image; {first}); give every image its label")
    return [Sample(stem, image_files[stem], label_files[stem]) for stem in image_files]
