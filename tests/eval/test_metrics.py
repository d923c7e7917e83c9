"""The confusion matrix and the FCN metrics, against hand-computed figures and a per-pixel NumPy statement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.eval.metrics import ConfusionMatrix, agreement, scores

# Six classes. Class 3 is only predicted, class 4 only in the ground truth, class 5 in neither (its one prediction
# falls on an ignored pixel, which must not count). Two ignored pixels.
GT = np.array([[0, 0, 0, 0, 1], [1, 2, 4, 255, 255]])
PRED = np.array([[0, 0, 1, 3, 1], [0, 2, 2, 5, 1]])


def test_hand_computed_matrix_and_metrics():
    cm = ConfusionMatrix(6, ignore_index=255)
    cm.update(GT, PRED)
    expected = np.zeros((6, 6), np.int64)
    expected[0, 0], expected[0, 1], expected[0, 3] = 2, 1, 1
    expected[1, 1], expected[1, 0] = 1, 1
    expected[2, 2] = 1
    expected[4, 2] = 1
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.ignored == 2

    s = scores(cm.matrix)
    # IU: 2/5, 1/3, 1/2, 0 (only predicted), 0 (only in ground truth), NaN (absent)
    np.testing.assert_allclose(s.class_iou[:5], [0.4, 1 / 3, 0.5, 0.0, 0.0])
    assert math.isnan(s.class_iou[5])
    # accuracy: 2/4, 1/2, 1/1, NaN (no ground truth), 0/1, NaN
    np.testing.assert_allclose(s.class_accuracy[[0, 1, 2, 4]], [0.5, 0.5, 1.0, 0.0])
    assert math.isnan(s.class_accuracy[3]) and math.isnan(s.class_accuracy[5])
    assert s.pixel_accuracy == pytest.approx(4 / 8)
    assert s.mean_accuracy == pytest.approx(2.0 / 4)
    assert s.mean_iou == pytest.approx(37 / 150)  # (2/5 + 1/3 + 1/2 + 0 + 0) / 5, class 5 not counted
    assert s.fw_iou == pytest.approx(83 / 240)  # (4*2/5 + 2*1/3 + 1*1/2 + 1*0) / 8
    assert s.absent_classes == [5]
    assert s.predicted_only == [3]
    assert s.pixels == 8

    d = s.as_dict([f"c{i}" for i in range(6)])
    assert d["absent_classes"] == ["c5"] and d["predicted_only"] == ["c3"]
    assert d["per_class"][5]["iou"] is None and d["per_class"][3]["accuracy"] is None


def _fcn_by_pixels(gts: list[np.ndarray], preds: list[np.ndarray], k: int, ignore: int) -> dict:
    """The FCN paper's definitions stated directly on pixels, with no confusion matrix."""
    gt = np.concatenate([g.ravel() for g in gts])
    pred = np.concatenate([p.ravel() for p in preds])
    valid = gt != ignore
    gt, pred = gt[valid], pred[valid]
    iu, acc, t = [], [], []
    for i in range(k):
        inter = np.sum((gt == i) & (pred == i))
        union = np.sum((gt == i) | (pred == i))
        iu.append(inter / union if union else np.nan)
        acc.append(inter / np.sum(gt == i) if np.sum(gt == i) else np.nan)
        t.append(np.sum(gt == i))
    iu, acc, t = np.array(iu), np.array(acc), np.array(t)
    return {"pixel": np.mean(gt == pred), "mean_acc": np.nanmean(acc), "mean_iu": np.nanmean(iu),
            "fw_iu": np.nansum(t * iu) / t.sum(), "iu": iu, "acc": acc}


@pytest.mark.parametrize("seed", range(5))
def test_matches_per_pixel_statement_over_several_frames(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    cm = ConfusionMatrix(k, ignore_index=255)
    gts, preds = [], []
    for _ in range(3):
        h, w = rng.integers(5, 40, size=2)
        gt = rng.integers(0, k, size=(h, w))
        gt[rng.random((h, w)) < 0.1] = 255
        if k > 3:
            gt[gt == k - 1] = 0  # the last class never in ground truth: only predicted or absent
        pred = np.where(rng.random((h, w)) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, k - 1, size=(h, w)))
        cm.update(gt, pred)
        gts.append(gt)
        preds.append(pred)
    got, want = scores(cm.matrix), _fcn_by_pixels(gts, preds, k, 255)
    assert got.pixel_accuracy == pytest.approx(want["pixel"])
    assert got.mean_accuracy == pytest.approx(want["mean_acc"])
    assert got.mean_iou == pytest.approx(want["mean_iu"])
    assert got.fw_iou == pytest.approx(want["fw_iu"])
    np.testing.assert_allclose(got.class_iou, want["iu"])
    np.testing.assert_allclose(got.class_accuracy, want["acc"])


def test_perfect_prediction_and_ignore_none():
    gt = np.array([[0, 1], [2, 2]])
    cm = ConfusionMatrix(4, ignore_index=None)
    cm.update(gt, gt)
    s = scores(cm.matrix)
    assert (s.pixel_accuracy, s.mean_accuracy, s.mean_iou, s.fw_iou) == (1.0, 1.0, 1.0, 1.0)
    assert s.absent_classes == [3]
    assert agreement(gt, gt) == 1.0 and agreement(gt, gt * 0) == 0.25


def test_counts_past_int32():
    cm = ConfusionMatrix(2)
    cm.matrix[0, 0] = 2**31 - 1
    cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    assert cm.matrix[0, 0] == 2**31 + 3


def test_bad_input_is_one_line_error():
    cm = ConfusionMatrix(3)
    with pytest.raises(RtsegError, match="prediction holds class 3 in f.png, outside 0..2"):
        cm.update(np.zeros((2, 2)), np.full((2, 2), 3), where="f.png")
    with pytest.raises(RtsegError, match="ground truth holds class 7.*--ignore-index"):
        cm.update(np.full((2, 2), 7), np.zeros((2, 2)))
    with pytest.raises(RtsegError, match="differ in shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    assert cm.matrix.sum() == 0
