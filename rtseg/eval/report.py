"""What ``rtseg eval`` shows and keeps: a table on stdout, ``eval.json``, ``confusion.npy`` and ``confusion.png``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import pyplot
from ..files import atomic_path, write_json, writable_dir
from .metrics import Scores


def prepare_out(out: str | os.PathLike) -> Path:
    """Create ``--out`` and prove it is writable before any slow work."""
    return writable_dir(out, "cannot write to --out {path}: {why}; pass a writable folder")


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def table(s: Scores, class_names: list[str]) -> str:
    """Per-class IU and accuracy of the classes seen (in the ground truth or the prediction), then the four FCN
    metrics; the classes in neither (a model's untrained outputs, a dataset's unused ids) are named on one line
    instead of a row of n/a each."""
    absent = set(s.absent_classes)
    lines = ["| class | IoU % | acc % |", "|---|---:|---:|"]
    lines += [f"| {name} | {_pct(s.class_iou[i])} | {_pct(s.class_accuracy[i])} |"
              for i, name in enumerate(class_names) if i not in absent]
    summary = (f"pixel acc {_pct(s.pixel_accuracy)}%  mean acc {_pct(s.mean_accuracy)}%  "
               f"mean IU {_pct(s.mean_iou)}%  fw IU {_pct(s.fw_iou)}%  ({s.pixels} pixels)")
    lines += ["", summary]
    if s.absent_classes:
        lines.append("absent from ground truth and prediction (NaN, not counted): "
                     + ", ".join(class_names[i] for i in s.absent_classes))
    if s.predicted_only:
        lines.append("predicted but never in the ground truth (IU 0, accuracy n/a): "
                     + ", ".join(class_names[i] for i in s.predicted_only))
    return "\n".join(lines)


def write_outputs(out: Path, report: dict, matrix: np.ndarray, class_names: list[str]) -> list[Path]:
    """eval.json, confusion.npy and the heat map, each written atomically."""
    write_json(out / "eval.json", report)
    with atomic_path(out / "confusion.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, matrix)
    heat = out / "confusion.png"
    heat_map(matrix, class_names, heat, report.get("title", "confusion"))
    return [out / "eval.json", out / "confusion.npy", heat]


def heat_map(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion (each ground-truth class sums to 1), so small classes are as readable as big ones;
    only the classes that occur (in the ground truth or the prediction)."""
    plt = pyplot("eval")
    seen = np.flatnonzero((matrix.sum(axis=0) + matrix.sum(axis=1)) > 0)  # classes absent from both: no row/column
    if 0 < len(seen) < len(class_names):
        matrix, class_names = matrix[np.ix_(seen, seen)], [class_names[i] for i in seen]
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float64), where=rows > 0)
    k = len(class_names)
    side = min(4 + 0.35 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the ground-truth class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
