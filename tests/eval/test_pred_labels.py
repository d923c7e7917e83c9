"""``rtseg eval --pred MASKS --labels LABELS`` (issue #21): two folders of class-id PNGs matched by stem or position,
class names from a bundle or --classes, a warning where the model's classes are not the set's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main


def _png(path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(ids, np.uint8), mode="L").save(path)


@pytest.fixture
def folders(tmp_path):
    """Three label maps (ids 0..2, a strip of 255 ignored) and masks that get one column of frame 1 wrong."""
    rng = np.random.default_rng(0)
    labels, masks = [], []
    for i in range(3):
        gt = rng.integers(0, 3, (12, 16))
        gt[:, 0] = 255
        pred = np.where(gt == 255, 0, gt)
        if i == 1:
            pred[:, 5] = (pred[:, 5] + 1) % 3
        _png(tmp_path / "labels" / f"{i:06d}.png", gt)
        _png(tmp_path / "masks" / f"{i:06d}.png", pred)
        labels.append(gt)
        masks.append(pred)
    return tmp_path, labels, masks


def _expected_matrix(labels, masks, k=3) -> np.ndarray:
    gt = np.concatenate([g.ravel() for g in labels]).astype(np.int64)
    pr = np.concatenate([m.ravel() for m in masks]).astype(np.int64)
    keep = gt != 255
    return np.bincount(gt[keep] * k + pr[keep], minlength=k * k).reshape(k, k)


def test_pred_and_labels_by_stem_with_class_names(folders, capsys):
    root, labels, masks = folders
    out = root / "out"
    assert main(["eval", "--pred", str(root / "masks"), "--labels", str(root / "labels"), "--classes",
                 "road,car,sky", "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out / "confusion.npy"), _expected_matrix(labels, masks))
    report = json.loads((out / "eval.json").read_text())
    assert [c["name"] for c in report["per_class"]] == ["road", "car", "sky"]
    assert report["layout"] == "labels" and report["ignored_pixels"] == 3 * 12
    stdout = capsys.readouterr().out
    assert "| road |" in stdout and "| sky |" in stdout and "| 0 |" not in stdout


def test_masks_matched_by_position_and_names_from_a_classes_file(folders):
    root, labels, masks = folders
    renamed = root / "named"
    for i, p in enumerate(sorted((root / "labels").iterdir())):
        (renamed / f"frame_{i:03d}.png").parent.mkdir(exist_ok=True)
        (renamed / f"frame_{i:03d}.png").write_bytes(p.read_bytes())
    (root / "names.txt").write_text("road\ncar\nsky\n")
    out = root / "out2"
    assert main(["eval", "--pred", str(root / "masks"), "--labels", str(renamed), "--classes",
                 str(root / "names.txt"), "--out", str(out), "--max-frames", "2"]) == 0
    report = json.loads((out / "eval.json").read_text())
    np.testing.assert_array_equal(np.load(out / "confusion.npy"), _expected_matrix(labels[:2], masks[:2]))
    assert report["images"] == 2 and report["per_class"][1]["name"] == "car"


def test_default_out_is_runs_eval_n_and_mistakes_are_one_line(folders, monkeypatch, capsys):
    root, _, _ = folders
    monkeypatch.chdir(root)
    for n in (1, 2):
        assert main(["eval", "--pred", "masks", "--labels", "labels", "--num-classes", "3"]) == 0
        assert (root / "runs" / "eval" / str(n) / "eval.json").is_file()
        assert f"runs/eval/{n}/eval.json" in capsys.readouterr().out
    for argv, needle in ((["--labels", "labels"], "--labels goes with --pred"),
                         (["--pred", "masks", "--labels", "labels"], "pass a BUNDLE, --classes or --num-classes"),
                         (["--pred", "masks", "--labels", "labels", "--classes", "a,,b"], "non-empty name"),
                         (["--pred", "masks", "--labels", "nowhere", "--num-classes", "3"], "is not a folder")):
        assert main(["eval", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtseg: error:") and needle in err and err.count("\n") == 1, err


def test_names_from_a_bundle_and_a_warning_where_the_set_differs(small_bundle, tmp_path, capsys):
    """A 19-class bundle whose classes are not Cityscapes' scored on a Cityscapes set: said before counting."""
    import shutil

    from rtseg.bundle import read_manifest

    names = read_manifest(small_bundle).model.class_names
    _png(tmp_path / "labels" / "a.png", np.zeros((4, 4)))
    _png(tmp_path / "masks" / "a.png", np.zeros((4, 4)))
    assert main(["eval", str(small_bundle), "--pred", str(tmp_path / "masks"), "--labels",
                 str(tmp_path / "labels"), "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert [c["name"] for c in report["per_class"]] == list(names)
    assert "warning" not in capsys.readouterr().err

    faces = tmp_path / "faces"
    shutil.copytree(small_bundle, faces)
    doc = json.loads((faces / "rtseg.json").read_text())
    doc["model"]["class_names"] = ["background", "skin", *[f"part_{i}" for i in range(2, 19)]]
    (faces / "rtseg.json").write_text(json.dumps(doc))
    cs = tmp_path / "cs"
    city = cs / "leftImg8bit" / "val" / "x"
    city.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(city / "x_000000_000000_leftImg8bit.png")
    _png(cs / "gtFine" / "val" / "x" / "x_000000_000000_gtFine_labelTrainIds.png", np.zeros((4, 4)))
    _png(tmp_path / "csmasks" / "x_000000_000000.png", np.zeros((4, 4)))
    assert main(["eval", str(faces), "--pred", str(tmp_path / "csmasks"), "--data", str(cs), "--out",
                 str(tmp_path / "o2")]) == 0
    err = capsys.readouterr().err
    assert "rtseg: warning:" in err and "not the cityscapes set's" in err and "0: background / road" in err, err
