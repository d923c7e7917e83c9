"""Each dataset layout on a small tree built here, read back through rtseg.eval.readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtseg.errors import RtsegError
from rtseg.eval.labels import CITYSCAPES_TRAIN_IDS
from rtseg.eval.readers import open_dataset

H, W = 6, 8


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def _gray(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), mode="L").save(path)


def _voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), 256 entries."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    # Every label id 0..33 and -1 (stored as 255 in a uint8 PNG) appears once in a 5x7 grid.
    ids = np.array(list(range(34)) + [255]).reshape(5, 7)
    for city, frame in (("aachen", "000000_000019"), ("bremen", "000001_000019")):
        _image(tmp_path / "leftImg8bit" / "val" / city / f"{city}_{frame}_leftImg8bit.png")
        _gray(tmp_path / "gtFine" / "val" / city / f"{city}_{frame}_gtFine_labelIds.png", ids)
    _image(tmp_path / "leftImg8bit" / "train" / "x" / "x_0_0_leftImg8bit.png")
    _gray(tmp_path / "gtFine" / "train" / "x" / "x_0_0_gtFine_labelIds.png", ids)

    ds = open_dataset(tmp_path, split="val")
    assert ds.layout == "cityscapes" and ds.num_classes == 19 and len(ds.samples) == 2
    assert [s.name for s in ds.samples] == ["aachen_000000_000019", "bremen_000001_000019"]
    got = ds.read_label(ds.samples[0])
    want = np.array([CITYSCAPES_TRAIN_IDS.get(i, 255) for i in ids.ravel()]).reshape(ids.shape)
    np.testing.assert_array_equal(got, want)
    assert got[1, 0] == 0 and got[4, 5] == 18 and got[4, 6] == 255  # road, bicycle, license plate (-1)
    assert sorted(set(got.ravel()) - {255}) == list(range(19))
    assert len(open_dataset(tmp_path, "cityscapes").samples) == 3


def test_cityscapes_train_ids_used_as_they_are_and_bad_ids_rejected(tmp_path):
    _image(tmp_path / "leftImg8bit" / "val" / "a" / "a_1_2_leftImg8bit.png")
    train = np.arange(H * W).reshape(H, W) % 19
    _gray(tmp_path / "gtFine" / "val" / "a" / "a_1_2_gtFine_labelTrainIds.png", train)
    _gray(tmp_path / "gtFine" / "val" / "a" / "a_1_2_gtFine_labelIds.png", np.full((H, W), 7))
    ds = open_dataset(tmp_path)
    np.testing.assert_array_equal(ds.read_label(ds.samples[0]), train)

    (tmp_path / "gtFine" / "val" / "a" / "a_1_2_gtFine_labelTrainIds.png").unlink()
    _gray(tmp_path / "gtFine" / "val" / "a" / "a_1_2_gtFine_labelIds.png", np.full((H, W), 40))
    ds = open_dataset(tmp_path)
    with pytest.raises(RtsegError, match="label id 40, outside Cityscapes' -1..33.*labelIds.png"):
        ds.read_label(ds.samples[0])


def test_voc_palette_pngs_read_as_indices(tmp_path):
    root = tmp_path / "VOCdevkit"
    voc = root / "VOC2012"
    ids = np.zeros((H, W), np.uint8)
    ids[1:5, 1:4], ids[1:5, 5:7] = 15, 1  # person, aeroplane
    ids[0, :], ids[:, 4] = 255, 255  # the white borders VOC draws around objects
    (voc / "SegmentationClass").mkdir(parents=True)
    for name in ("2007_000032", "2007_000033", "2007_000039"):
        _image(voc / "JPEGImages" / f"{name}.jpg")
        label = Image.fromarray(ids, mode="P")
        label.putpalette(_voc_palette())
        label.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000039\n")

    ds = open_dataset(voc)
    assert ds.layout == "voc" and ds.num_classes == 21 and [s.name for s in ds.samples] == ["2007_000033",
                                                                                              "2007_000039"]
    got = ds.read_label(ds.samples[0])
    np.testing.assert_array_equal(got, ids)  # indices, not colours: person is 15, not (192, 128, 128)
    with pytest.raises(RtsegError, match="no split list .*train.txt"):
        open_dataset(voc, split="train")

    # The same labels re-saved as RGB colours are not a label map: one line naming the fix.
    Image.open(voc / "SegmentationClass" / "2007_000033.png").convert("RGB").save(
        voc / "SegmentationClass" / "2007_000033.png")
    with pytest.raises(RtsegError, match="RGB colour image, not a label map.*palette PNGs"):
        ds.read_label(ds.samples[0])


def test_camvid_class_11_ignored(tmp_path):
    ids = np.arange(H * W).reshape(H, W) % 12  # 0..11, 11 is Unlabelled
    for split, names in (("train", ["0001TP_006690", "0001TP_006720"]), ("val", ["0016E5_07959"])):
        for i, name in enumerate(names):
            _image(tmp_path / split / f"{name}.png", i)
            _gray(tmp_path / f"{split}annot" / f"{name}.png", ids)
    ds = open_dataset(tmp_path)
    assert ds.layout == "camvid" and ds.num_classes == 11 and len(ds.samples) == 3
    got = ds.read_label(open_dataset(tmp_path, split="val").samples[0])
    np.testing.assert_array_equal(got, np.where(ids == 11, 255, ids))
    assert (got == 255).sum() == (ids == 11).sum() > 0


def test_pairs_and_grey_rgb_labels(tmp_path):
    ids = np.arange(H * W).reshape(H, W) % 3
    _image(tmp_path / "images" / "a.jpg")
    _image(tmp_path / "images" / "b.png")
    _gray(tmp_path / "labels" / "a.png", ids)
    (tmp_path / "labels" / "b.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.repeat(ids[..., None].astype(np.uint8), 3, axis=2)).save(tmp_path / "labels" / "b.png")
    ds = open_dataset(tmp_path)
    assert ds.layout == "pairs" and ds.num_classes is None
    assert [s.name for s in ds.samples] == ["a", "b"]
    for s in ds.samples:  # a grey map saved as RGB is still ids
        np.testing.assert_array_equal(ds.read_label(s), ids)


def test_bad_data_folders_are_one_line_errors(tmp_path):
    with pytest.raises(RtsegError, match="is not a folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(RtsegError, match="cannot tell the layout.*--layout"):
        open_dataset(tmp_path)
    with pytest.raises(RtsegError, match="unknown layout 'ade'"):
        open_dataset(tmp_path, "ade")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(RtsegError, match="no image/label pairs found"):
        open_dataset(tmp_path)
    _image(tmp_path / "images" / "a.png")
    _image(tmp_path / "images" / "b.png")
    _gray(tmp_path / "labels" / "a.png", np.zeros((H, W)))
    with pytest.raises(RtsegError, match="do not match \\(1 images without a label.*b\\.\\* has no label"):
        open_dataset(tmp_path)
