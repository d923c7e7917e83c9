"""The confusion matrix and the four metrics of the FCN paper (Long, Shelhamer, Darrell, CVPR 2015, section 5).

With ``n_ij`` the number of pixels of ground-truth class ``i`` predicted as class ``j`` and ``t_i = sum_j n_ij``
the pixels of class ``i`` in the ground truth:

    pixel accuracy          sum_i n_ii / sum_i t_i
    mean accuracy           (1/n_cl) sum_i n_ii / t_i
    mean IU                 (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU   (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Two choices the paper leaves open are made explicit here, because tools differ on them and the figures move:

- A class absent from both the ground truth and the prediction has IU 0/0: it is NaN, listed in
  ``absent_classes`` and left out of the means (counting it as 0 understates mIoU, counting it as 1 inflates it).
- A class that is predicted but never in the ground truth has IU 0 (it is counted: false positives cost) and
  accuracy 0/0 = NaN (it has no ground-truth pixels to be accurate on), so it is left out of the mean accuracy.

Ignored pixels (``ignore_index`` in the ground truth) are removed before anything is counted, so they are neither
a class nor an error. The matrix is int64: a 2048x1024 frame has 2^21 pixels, a few thousand frames overflow int32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import RtsegError


class ConfusionMatrix:
    """An int64 ``(K, K)`` count of ground-truth class (rows) against predicted class (columns) over a whole set."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if num_classes < 1:
            raise RtsegError(f"the number of classes must be at least 1, not {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.ignored = 0  # ground-truth pixels skipped as ignore_index, over the whole set

    def update(self, gt: np.ndarray, pred: np.ndarray, where: str = "") -> None:
        """Count one label map against one prediction of the same shape."""
        at = f" in {where}" if where else ""
        if gt.shape != pred.shape:
            raise RtsegError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape{at}")
        gt = gt.reshape(-1).astype(np.int64, copy=False)
        pred = pred.reshape(-1).astype(np.int64, copy=False)
        if self.ignore_index is not None:
            keep = gt != self.ignore_index
            self.ignored += int(gt.size - np.count_nonzero(keep))
            gt, pred = gt[keep], pred[keep]
        k = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            bad = int(pred.max() if pred.max() >= k else pred.min())
            raise RtsegError(f"prediction holds class {bad}{at}, outside 0..{k - 1}; the model and the data"
                             f" disagree on the number of classes (pass the right --num-classes or bundle)")
        if gt.size and (gt.min() < 0 or gt.max() >= k):
            bad = int(gt.max() if gt.max() >= k else gt.min())
            ignore = f" or the ignore index {self.ignore_index}" if self.ignore_index is not None else ""
            raise RtsegError(f"ground truth holds class {bad}{at}, outside 0..{k - 1}{ignore}; check --layout,"
                             f" --ignore-index and the number of classes")
        self.matrix += np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix
        self.ignored += other.ignored


@dataclass
class Scores:
    """The FCN metrics of one confusion matrix, with per-class figures (NaN where undefined)."""

    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    fw_iou: float
    class_iou: np.ndarray  # (K,) float64, NaN for classes absent from both ground truth and prediction
    class_accuracy: np.ndarray  # (K,) float64, NaN for classes with no ground-truth pixel
    absent_classes: list[int]  # in neither ground truth nor prediction: NaN, not counted
    predicted_only: list[int]  # predicted, never in the ground truth: IU 0, accuracy NaN
    pixels: int  # pixels counted (ignored ones excluded)

    def as_dict(self, class_names: list[str] | None = None) -> dict:
        names = class_names or [str(i) for i in range(len(self.class_iou))]
        return {
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_accuracy": _json_float(self.mean_accuracy),
            "mean_iou": _json_float(self.mean_iou),
            "fw_iou": _json_float(self.fw_iou),
            "pixels": self.pixels,
            "absent_classes": [names[i] for i in self.absent_classes],
            "predicted_only": [names[i] for i in self.predicted_only],
            "per_class": [{"id": i, "name": names[i], "iou": _json_float(self.class_iou[i]),
                           "accuracy": _json_float(self.class_accuracy[i])} for i in range(len(names))],
        }


def scores(matrix: np.ndarray) -> Scores:
    """The FCN paper's four metrics and the per-class IU and accuracy of an int ``(K, K)`` confusion matrix."""
    n = np.asarray(matrix, dtype=np.float64)  # (K, K): rows ground truth, columns prediction
    hits = np.diag(n)  # n_ii
    gt_pixels = n.sum(axis=1)  # t_i
    predicted = n.sum(axis=0)  # sum_j n_ji
    union = gt_pixels + predicted - hits
    total = gt_pixels.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        class_iou = np.where(union > 0, hits / union, np.nan)
        class_acc = np.where(gt_pixels > 0, hits / gt_pixels, np.nan)
    present = union > 0
    return Scores(
        pixel_accuracy=float(hits.sum() / total) if total else math.nan,
        mean_accuracy=_nanmean(class_acc),
        mean_iou=_nanmean(class_iou),
        # Classes with t_i = 0 weigh nothing; the NaN of absent classes is replaced by that zero weight.
        fw_iou=float(np.sum(gt_pixels[present] * class_iou[present]) / total) if total else math.nan,
        class_iou=class_iou,
        class_accuracy=class_acc,
        absent_classes=[int(i) for i in np.flatnonzero(~present)],
        predicted_only=[int(i) for i in np.flatnonzero((gt_pixels == 0) & (predicted > 0))],
        pixels=int(total),
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels where two label maps hold the same class."""
    return float(np.count_nonzero(a == b) / a.size) if a.size else math.nan


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(value: float) -> float | None:
    """JSON has no NaN: undefined figures are written as null."""
    return None if math.isnan(value) else float(value)
