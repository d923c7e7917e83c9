"""The street world is deterministic, and every label is what was drawn at that pixel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtseg.demo.render import Camera, render
from rtseg.demo.world import (
    CAR,
    CLASSES,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    Objects,
    make_world,
)

pytest.importorskip("cv2")

H, W = 180, 320


def _first(objs: Objects, **values) -> Objects:
    """The first object only, with some of its columns set."""
    cols = {f.name: np.array(getattr(objs, f.name)[:1], copy=True) for f in dataclasses.fields(objs)}
    for key, value in values.items():
        cols[key][0] = value
    return Objects(**cols)


def _none(objs: Objects) -> Objects:
    return Objects(**{f.name: getattr(objs, f.name)[:0] for f in dataclasses.fields(objs)})


@pytest.fixture(scope="module")
def staged():
    """One magenta car straight ahead and one person to its left in a street with nothing else in it; plain light."""
    cam = Camera(s=40.0, x=0.0, height=1.5, focal=0.85, horizon=0.45)
    world = make_world(5)
    world = dataclasses.replace(
        world, trees=_none(world.trees),
        cars=_first(world.cars, x=0.0, s=cam.s + 12.0, speed=0.0, colour=(250, 0, 250), size=(1.8, 1.5, 4.4),
                    phase=0.0),
        people=_first(world.people, x=-2.0, s=cam.s + 8.0, speed=0.0, cross=0.0, size=(0.5, 1.8, 0.3)),
        light=dataclasses.replace(world.light, gain=1.0, tint=np.ones(3, np.float32), visibility=1e9, shadow=0.0))
    rgb, labels = render(world, cam, 0.0, H, W)
    return world, cam, rgb, labels


def _project(cam: Camera, x, y, z):
    f, cx, cy = cam.intrinsics(H, W)
    return cx + f * (np.asarray(x) - cam.x) / np.asarray(z), cy - f * (np.asarray(y) - cam.height) / np.asarray(z)


def test_same_seed_same_frame_and_labels_only_world_classes():
    world = make_world(11)
    cam = Camera(s=123.0, x=1.0, height=1.7, focal=0.9, horizon=0.42, yaw=0.05)
    a = render(world, cam, 2.5, H, W, noise_seed=3)
    b = render(make_world(11), cam, 2.5, H, W, noise_seed=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = render(world, cam, 2.5, H, W, noise_seed=4)  # other sensor noise: other pixels, the same labels
    assert not np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    other = render(make_world(12), cam, 2.5, H, W, noise_seed=3)
    assert not np.array_equal(a[1], other[1])
    assert set(np.unique(a[1])) <= set(CLASSES)
    assert a[0].shape == (H, W, 3) and a[0].dtype == np.uint8 and a[1].shape == (H, W) and a[1].dtype == np.uint8


def test_car_pixels_are_labelled_car(staged):
    _, cam, rgb, labels = staged
    car = labels == CAR
    width, height, length = 1.8, 1.5, 4.4
    z0, z1 = 12.0 - length / 2, 12.0 + length / 2
    # every car pixel lies inside the projection of the car's bounding box
    us, vs = _project(cam, [-width / 2, width / 2] * 4, [0, 0, height, height] * 2, [z0] * 4 + [z1] * 4)
    rows, cols = np.nonzero(car)
    assert rows.size > 0.5 * (us.max() - us.min()) * (vs.max() - vs.min())
    assert cols.min() >= np.floor(us.min()) - 1 and cols.max() <= np.ceil(us.max()) + 1
    assert rows.min() >= np.floor(vs.min()) - 1 and rows.max() <= np.ceil(vs.max()) + 1
    # the middle of its near face is car; the magenta paint shows only where the label says car
    u, v = _project(cam, 0.0, 0.5, z0)
    assert labels[int(v), int(u)] == CAR
    paint = (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] > 150)
    assert paint.sum() > 0.3 * car.sum()
    assert np.all(car[paint])


def test_person_road_sidewalk_and_sky_where_drawn(staged):
    world, cam, _, labels = staged
    person = labels == PERSON
    us, vs = _project(cam, [-2.0 - 0.45, -2.0 + 0.45], [0.0, 1.8], [8.0, 8.0])
    rows, cols = np.nonzero(person)
    assert rows.size > 20
    assert cols.min() >= us.min() - 1 and cols.max() <= us.max() + 1
    assert rows.min() >= vs.min() - 1 and rows.max() <= vs.max() + 1
    u, v = _project(cam, -2.0, 1.2, 8.0)  # the torso
    assert labels[int(v), int(u)] == PERSON
    # the road under the camera, the sidewalk beyond the kerb, the sky straight up the street
    u, v = _project(cam, 1.0, 0.0, 6.0)
    assert labels[int(v), int(u)] == ROAD
    x_walk = world.road_half + 0.5 * (world.right.face - world.road_half)
    u, v = _project(cam, x_walk, 0.0, 20.0)
    assert labels[int(v), int(u)] == SIDEWALK
    assert labels[0, W // 2] == SKY
