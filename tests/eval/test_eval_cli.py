"""``rtseg eval`` end to end on the session's small bundle: labels from its own predictions, saved masks, parity."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main
from rtseg.scenes import synthetic_scenes
from rtseg.runtime import load

SIZES = [(64, 128), (48, 96), (80, 144)]


@pytest.fixture(scope="module")
def own_labels(small_bundle, tmp_path_factory):
    """A pairs set whose labels are the bundle's own predictions (ONNX Runtime, CPU), at three frame sizes."""
    root = tmp_path_factory.mktemp("own")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    preds = []
    with load(small_bundle, backend="onnxruntime", device="cpu") as seg:
        for i, (h, w) in enumerate(SIZES):
            frame = np.ascontiguousarray(synthetic_scenes(1, h, w, seed=50 + i)[0][..., ::-1])  # BGR
            cv2.imwrite(str(root / "images" / f"f{i}.png"), frame)
            labels = seg.segment(frame).labels
            Image.fromarray(labels.astype(np.uint8), mode="L").save(root / "labels" / f"f{i}.png")
            preds.append(labels)
    return root, preds


def _report(out) -> dict:
    return json.loads((out / "eval.json").read_text())


def test_labels_from_own_predictions_give_miou_1(small_bundle, own_labels, tmp_path, capsys):
    root, preds = own_labels
    out = tmp_path / "out"
    assert main(["eval", str(small_bundle), "--data", str(root), "--backend", "onnxruntime", "--device", "cpu",
                 "--out", str(out)]) == 0
    r = _report(out)
    assert r["mode"] == "labelled" and r["layout"] == "pairs" and r["images"] == 3
    assert r["mean_iou"] == 1.0 and r["pixel_accuracy"] == 1.0 and r["fw_iou"] == 1.0
    present = sorted(set(np.concatenate([p.ravel() for p in preds]).tolist()))
    assert [c["id"] for c in r["per_class"] if c["iou"] is not None] == present
    assert len(r["absent_classes"]) == 19 - len(present)
    matrix = np.load(out / "confusion.npy")
    assert matrix.dtype == np.int64 and matrix.sum() == sum(h * w for h, w in SIZES)
    assert np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 0
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stdout = capsys.readouterr().out
    assert "mean IU 100.00%" in stdout and "absent from ground truth and prediction" in stdout
    # a row per class seen, none of n/a for the classes in neither (e.g. a model's untrained outputs)
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| class")]
    assert len(rows) == len(present) and "n/a" not in "".join(rows)


def test_saved_masks_scored_in_rtseg_run_numbering(own_labels, tmp_path):
    root, preds = own_labels
    masks = tmp_path / "masks"
    masks.mkdir()
    wrong = [p.copy() for p in preds]
    wrong[1][:10, :] = (wrong[1][:10, :] + 1) % 19  # ten rows of the second image moved to another class
    for i, m in enumerate(wrong):
        Image.fromarray(m.astype(np.uint8), mode="L").save(masks / f"{i:06d}.png")
    out = tmp_path / "out"
    assert main(["eval", "--pred", str(masks), "--data", str(root), "--num-classes", "19", "--out", str(out)]) == 0
    r = _report(out)
    total = sum(h * w for h, w in SIZES)
    assert r["pixel_accuracy"] == pytest.approx(1 - 10 * SIZES[1][1] / total)
    assert r["mean_iou"] < 1.0
    # the labelled count, done here by hand from the masks
    gt = np.concatenate([p.ravel() for p in preds]).astype(np.int64)  # ids up to 18: 18 * 19 + 18 > 255
    pr = np.concatenate([m.ravel() for m in wrong]).astype(np.int64)
    np.testing.assert_array_equal(np.load(out / "confusion.npy"),
                                  np.bincount(gt * 19 + pr, minlength=19 * 19).reshape(19, 19))

    (masks / "000002.png").unlink()
    assert main(["eval", "--pred", str(masks), "--data", str(root), "--num-classes", "19", "--out", str(out)]) == 2


def test_parity_against_own_fp16_graph_gives_reported_agreement(small_bundle, tmp_path):
    manifest = json.loads((small_bundle / "rtseg.json").read_text())
    report = manifest["verification"]["onnx_fp16"]["per_size"][0]
    h, w = report["size"]
    frames = tmp_path / "frames"
    frames.mkdir()
    # the frames export verified on: synthetic scenes at the opt size, with the seed the exporter uses
    for i, rgb in enumerate(synthetic_scenes(report["frames"], h, w, seed=h * 10007 + w)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    out = tmp_path / "out"
    assert main(["eval", str(small_bundle), "--backend", "torch", "--device", "cpu", "--against",
                 "onnxruntime:fp16", "--data", str(frames), "--out", str(out)]) == 0
    r = _report(out)
    assert r["mode"] == "parity" and r["frames"] == report["frames"]
    assert r["candidate"]["graph"] == "model.fp16.onnx" and r["reference"]["backend"] == "torch"
    assert r["agreement"] == pytest.approx(report["agreement"], abs=1e-4)
    # FP16 moves a few boundary pixels; small classes feel it most (the bundle segments several classes per frame)
    assert 0.99 < r["mean_iou"] <= 1.0


def _pairs(root, label_size=(6, 8)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((6, 8, 3), np.uint8))
    Image.fromarray(np.zeros(label_size, np.uint8), mode="L").save(root / "labels" / "a.png")
    return root


@pytest.mark.parametrize("case, needle", [
    ("empty", "no image/label pairs found"),
    ("mismatched", "images and labels do not match"),
    ("label size", "labels must have their image's size"),
    ("layout", "unknown layout 'ade'"),
    ("bundle", "is not an rtseg bundle"),
    ("out", "cannot write to --out"),
])
def test_bad_input_one_line(case, needle, small_bundle, tmp_path, capsys):
    data, bundle, extra, out = tmp_path / "data", str(small_bundle), [], tmp_path / "out"
    if case == "empty":
        (data / "images").mkdir(parents=True)
        (data / "labels").mkdir()
    else:
        _pairs(data, (5, 8) if case == "label size" else (6, 8))
    if case == "mismatched":
        cv2.imwrite(str(data / "images" / "b.png"), np.zeros((6, 8, 3), np.uint8))
    if case == "layout":
        extra = ["--layout", "ade"]
    if case == "bundle":
        bundle = str(tmp_path)
    if case == "out":
        out.write_text("a file where the folder should be")
    code = main(["eval", bundle, "--data", str(data), "--device", "cpu", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rtseg: error:") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "eval.json").exists()
