"""The three ways of filling a confusion matrix: a bundle on a labelled set, saved masks against a labelled set,
and one segmenter against another on the same frames (parity, no labels needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RtsegError
from .frames import FrameSet, read_image
from .metrics import ConfusionMatrix
from .readers import Dataset, Sample


def progress(total: int | None, desc: str):
    from tqdm import tqdm

    # Shown on a terminal only (disable=None): logs and pipes get no carriage-return noise.
    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)


def _label_for(ds: Dataset, sample: Sample, hw: tuple[int, int]) -> np.ndarray:
    label = ds.read_label(sample)
    if label.shape != tuple(hw):
        raise RtsegError(f"the label {sample.label} is {label.shape[1]}x{label.shape[0]} but its image is"
                         f" {hw[1]}x{hw[0]}; labels must have their image's size")
    return label


def evaluate_segmenter(seg, ds: Dataset, limit: int | None = None) -> ConfusionMatrix:
    """Segment every image of ``ds`` and count its labels against the ground truth."""
    cm = ConfusionMatrix(seg.num_classes, ds.ignore_index)
    samples = ds.samples[:limit]
    with progress(len(samples), "eval") as bar:
        for sample in samples:
            frame = read_image(sample.image)
            label = _label_for(ds, sample, frame.shape[:2])
            cm.update(label, seg.segment(frame).labels, where=sample.name)
            bar.update()
    return cm


def mask_files(mask_dir: Path, ds: Dataset) -> list[Path]:
    """The mask of each sample: ``<name>.png`` where every sample has one, else ``rtseg run --save-masks``'s
    ``<index:06d>.png`` in the samples' order (the order ``rtseg run`` reads a folder of images in)."""
    if not mask_dir.is_dir():
        raise RtsegError(f"--pred {mask_dir} is not a folder; pass the folder rtseg run --save-masks wrote")
    by_name = [mask_dir / f"{s.name}.png" for s in ds.samples]
    if all(p.is_file() for p in by_name):
        return by_name
    numbered = sorted(p for p in mask_dir.glob("*.png") if p.stem.isdigit())
    if len(numbered) != len(ds.samples):
        raise RtsegError(f"--pred {mask_dir} holds {len(numbered)} numbered masks (<index:06d>.png) for"
                         f" {len(ds.samples)} images in --data; run rtseg run --save-masks on the same images")
    expected = [mask_dir / f"{i:06d}.png" for i in range(len(ds.samples))]
    if numbered != expected:
        raise RtsegError(f"--pred {mask_dir}: the masks are not numbered 000000.png to {len(ds.samples) - 1:06d}.png;"
                         f" run rtseg run --save-masks on the same images")
    return expected


def evaluate_masks(mask_dir: Path, ds: Dataset, num_classes: int, limit: int | None = None,
                   palette: np.ndarray | None = None, palette_from: str = "") -> ConfusionMatrix:
    """Count saved prediction masks (class ids; colour masks through ``palette``, see
    :func:`labels.read_prediction`) against the ground truth."""
    import sys

    from .labels import read_prediction

    cm = ConfusionMatrix(num_classes, ds.ignore_index)
    pairs = list(zip(ds.samples, mask_files(mask_dir, ds)))[:limit]
    said = False
    with progress(len(pairs), "eval") as bar:
        for sample, mask in pairs:
            pred, from_colour = read_prediction(mask, num_classes, palette, palette_from)
            if from_colour and not said:
                said = True
                print(f"rtseg: note: {mask_dir} holds colour masks; read back to class ids through {palette_from}"
                      f" (rtseg run --save-masks writes the class ids themselves beside them)", file=sys.stderr,
                      flush=True)
            label = ds.read_label(sample)
            if label.shape != pred.shape:
                raise RtsegError(f"the mask {mask} is {pred.shape[1]}x{pred.shape[0]} but the label {sample.label}"
                                 f" is {label.shape[1]}x{label.shape[0]}; masks and labels must match in size")
            cm.update(label, pred, where=mask.name)
            bar.update()
    return cm


def evaluate_parity(reference, candidate, frames: FrameSet, limit: int | None = None
                    ) -> tuple[ConfusionMatrix, int, str | None]:
    """Both segmenters on the same frames; the reference's labels play the ground truth. Returns the matrix, the
    number of frames and, for a video cut short, why it ended early (its decodable frames are counted first)."""
    if reference.num_classes != candidate.num_classes:
        raise RtsegError(f"the two sides have {reference.num_classes} and {candidate.num_classes} classes; parity"
                         f" needs bundles of the same model")
    cm = ConfusionMatrix(reference.num_classes, ignore_index=None)
    count = 0
    total = min(frames.count, limit) if frames.count is not None and limit is not None else (frames.count or limit)
    ended_early = None
    items = iter(frames)
    with progress(total, "parity") as bar:
        while limit is None or count < limit:
            try:
                item = next(items, None)
            except RtsegError as exc:  # the source's own failure, after its last decodable frame
                ended_early = str(exc)
                break
            if item is None:
                break
            name, frame = item
            cm.update(reference.segment(frame).labels, candidate.segment(frame).labels, where=name)
            count += 1
            bar.update()
    if hasattr(items, "close"):
        items.close()
    if count == 0:
        raise RtsegError(ended_early or f"--data {frames.path} gave no frames; pass a folder of images or a video with"
                         f" frames")
    return cm, count, ended_early
