"""Recipes name real models at sizes they take; synthetic scenes look like scenes; user frames load and resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.export.recipes import load_recipe
from rtseg.bundle import Preprocessing, normalize
from rtseg.scenes import load_frames, synthetic_scenes
from rtseg.models import create_model, list_models, model_info
from rtseg.sizes import parse_range, parse_size

RECIPES = sorted((Path(__file__).resolve().parents[2] / "export").glob("*.toml"))


def test_one_recipe_per_model():
    assert {p.stem for p in RECIPES} == set(list_models())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    opts = load_recipe(path)
    info = model_info(opts["model"])
    assert opts["num_classes"] == info.default_num_classes
    model = create_model(info.name)
    sizes = [parse_size(opts["size"] if "size" in opts else opts["input_size"], "size")]
    if opts.get("dynamic"):
        sizes += list(parse_range(opts["dynamic"]))
        assert getattr(model, "dynamic_shapes_supported", True)
    for hw in sizes:
        model.check_input_size(*hw)


def test_recipe_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "fast_scnn"\ncolour = "red"\n')
    with pytest.raises(RtsegError, match="unknown key model.colour"):
        load_recipe(bad)
    with pytest.raises(RtsegError, match="recipe not found"):
        load_recipe(tmp_path / "missing.toml")


def test_synthetic_scenes_are_deterministic_and_scene_like():
    a = synthetic_scenes(3, 128, 256, seed=5)
    assert a.shape == (3, 128, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_scenes(3, 128, 256, seed=5))
    assert not np.array_equal(a[0], a[1])
    gray = a.astype(np.float32).mean(-1)
    grad = np.abs(np.diff(gray, axis=1))
    assert (grad < 8).mean() > 0.6  # large smooth regions
    assert (grad > 40).mean() > 0.003  # sharp edges
    assert np.median(grad) > 1  # fine texture everywhere: no region is a flat fill


def test_normalize_matches_formula():
    frames = synthetic_scenes(1, 8, 8)
    pre = Preprocessing((0.5, 0.4, 0.3), (0.2, 0.25, 0.5), "RGB", 1.0)
    x = normalize(frames, pre)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    assert np.allclose(x[0, 1], (frames[0, ..., 1] / 255.0 - 0.4) / 0.25, atol=1e-6)
    bgr = normalize(frames, Preprocessing((104.0, 117.0, 123.0), (1.0, 1.0, 1.0), "BGR", 255.0))
    assert np.allclose(bgr[0, 0], frames[0, ..., 2] - 104.0, atol=1e-4)


def test_load_frames_from_images_and_video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    frames = synthetic_scenes(3, 60, 80)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), f[..., ::-1])
    got = load_frames(tmp_path, 2, 30, 40)
    assert got.shape == (2, 30, 40, 3)
    one = load_frames(tmp_path / "0.png", 4, 60, 80)
    assert np.array_equal(one[0], frames[0])  # RGB order restored, no resize at the same size

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    assert load_frames(video, 3, 64, 64).shape[1:] == (64, 64, 3)
    with pytest.raises(RtsegError, match="no such file"):
        load_frames(tmp_path / "none", 1, 8, 8)
