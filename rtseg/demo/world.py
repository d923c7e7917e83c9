"""A labelled synthetic street world: what is where, drawn from a seed.

A street runs along the ``s`` axis (metres). The road spans ``|x| < road_half``; sidewalks run from the kerb to the
facade planes at ``x = -left_face`` and ``x = +right_face``. Each side is a row of segments (buildings with window
grids, or park hedges); trees stand on the sidewalks; cars drive in lanes or are parked at the kerbs; people walk
on the sidewalks or cross the road. Everything moves with time ``t`` so a camera driving down the street sees a
consistent scene. :mod:`rtseg.demo.render` turns a world, a camera and a time into an RGB frame and its label map.

Classes are Cityscapes train ids, so the shipped model's bundle carries the Cityscapes names and palette.
The world is periodic in ``s`` (period ``length``), so any camera position sees a full street.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Cityscapes train ids of the classes the world draws.
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 8, 10, 11, 13
CLASSES = {ROAD: "road", SIDEWALK: "sidewalk", BUILDING: "building", VEGETATION: "vegetation", SKY: "sky",
           PERSON: "person", CAR: "car"}
NUM_CLASSES = 19  # the model predicts all Cityscapes train ids; the world uses the seven above
IGNORE = 255

# Car paints people actually drive (RGB): greys close to asphalt on purpose, so shape, not colour, marks a car.
_CAR_PAINTS = np.array([[235, 235, 235], [30, 30, 32], [150, 152, 155], [95, 97, 100], [160, 20, 25],
                        [20, 50, 140], [40, 90, 60], [200, 170, 60], [120, 60, 30], [60, 110, 170]], np.float32)
_SKIN = np.array([[255, 219, 172], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 56, 30]], np.float32)


@dataclass
class Lighting:
    """The light of one scene: overall gain and tint, sky colours, the sun's side, shadow depth and haze."""

    gain: float
    tint: np.ndarray  # (3,) RGB multiplier
    sky_top: np.ndarray  # (3,) RGB
    sky_horizon: np.ndarray  # (3,) RGB
    clouds: float  # 0 clear .. 1 overcast
    sun_side: int  # +1: sun from the right (left side of the road in shadow), -1 the opposite
    shadow: float  # how much the shaded side is darkened, 0..1
    shadow_x: float  # the shadow edge across the road, in metres from the centre line
    visibility: float  # haze: metres at which 63% of the colour is lost to the horizon colour


@dataclass
class Facades:
    """One side of the street: segments ``[s0, s1)`` with their height and look, sorted by ``s0``."""

    face: float  # distance of the facade plane from the centre line
    s0: np.ndarray  # (M,) segment starts; segment i covers [s0[i], s0[i+1])
    height: np.ndarray  # (M,) metres
    colour: np.ndarray  # (M, 3) RGB
    is_park: np.ndarray  # (M,) bool: a hedge (vegetation) instead of a building
    window_period: np.ndarray  # (M,) metres between window columns
    floor_height: np.ndarray  # (M,) metres between floors
    window_colour: np.ndarray  # (M, 3)
    texture: np.ndarray  # (M,) strength of the plaster/brick texture


@dataclass
class Objects:
    """Things standing in the street, as arrays (one row per object)."""

    x: np.ndarray  # lateral position (centre)
    s: np.ndarray  # position along the street at t = 0
    speed: np.ndarray  # metres per second along s (cars, walkers) ...
    cross: np.ndarray  # ... or across the road (people on a crossing); 0 otherwise
    size: np.ndarray  # (N, 3) width, height, length in metres
    colour: np.ndarray  # (N, 3) main colour
    colour2: np.ndarray  # (N, 3) second colour (trousers, trunk)
    skin: np.ndarray  # (N, 3) people only
    phase: np.ndarray  # walking phase / tree shape seed


@dataclass
class StreetWorld:
    """A whole street, deterministic from ``seed``."""

    seed: int
    length: float
    road_half: float
    lane_marks: bool
    asphalt: np.ndarray  # (3,) RGB
    pavement: np.ndarray  # (3,) RGB
    tile: float  # paving tile size in metres
    crossings: np.ndarray  # (K,) s of zebra crossings
    left: Facades
    right: Facades
    trees: Objects
    cars: Objects
    people: Objects
    light: Lighting
    extras: dict = field(default_factory=dict)


def make_world(seed: int, length: float = 600.0) -> StreetWorld:
    """A random street from ``seed``: widths, facades, trees, cars, people and light all vary."""
    rng = np.random.default_rng([seed, 7919])
    road_half = float(rng.uniform(3.2, 7.0))
    left = _facades(rng, road_half + rng.uniform(2.0, 5.0), length)
    right = _facades(rng, road_half + rng.uniform(2.0, 5.0), length)
    crossings = np.sort(rng.uniform(0, length, size=rng.integers(1, 4)))
    return StreetWorld(
        seed=seed, length=length, road_half=road_half, lane_marks=bool(rng.random() < 0.85),
        asphalt=rng.uniform(55, 115) * rng.uniform(0.93, 1.07, 3).astype(np.float32),
        pavement=_pick(rng, [[165, 160, 150], [190, 185, 175], [150, 120, 105], [125, 125, 130], [200, 190, 160]],
                       jitter=15),
        tile=float(rng.uniform(0.3, 1.0)), crossings=crossings,
        left=left, right=right,
        trees=_trees(rng, road_half, left.face, right.face, length),
        cars=_cars(rng, road_half, length),
        people=_people(rng, road_half, left.face, right.face, length, crossings),
        light=_lighting(rng, road_half),
    )


def _pick(rng, choices, jitter: float = 0.0) -> np.ndarray:
    c = np.asarray(choices, np.float32)[rng.integers(len(choices))]
    return np.clip(c + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


def _facades(rng, face: float, length: float) -> Facades:
    starts, s = [], 0.0
    while s < length:
        starts.append(s)
        s += rng.uniform(8.0, 30.0)
    m = len(starts)
    is_park = rng.random(m) < 0.18
    palette = np.array([[200, 190, 170], [170, 100, 80], [140, 140, 145], [225, 215, 190], [110, 90, 80],
                        [90, 100, 115], [180, 160, 120], [235, 235, 230], [150, 80, 60], [70, 72, 75]], np.float32)
    greens = np.array([[55, 95, 40], [80, 120, 45], [45, 75, 35], [95, 125, 60]], np.float32)
    colour = np.where(is_park[:, None], greens[rng.integers(len(greens), size=m)],
                      palette[rng.integers(len(palette), size=m)]) * rng.uniform(0.8, 1.15, (m, 1))
    height = np.where(is_park, rng.uniform(1.5, 5.0, m), rng.uniform(6.0, 40.0, m))
    glass = np.array([[40, 50, 65], [70, 90, 110], [25, 25, 30], [110, 130, 150], [170, 180, 190]], np.float32)
    return Facades(
        face=float(face), s0=np.asarray(starts, np.float64), height=height.astype(np.float32),
        colour=np.clip(colour, 0, 255).astype(np.float32), is_park=is_park,
        window_period=rng.uniform(1.8, 4.0, m).astype(np.float32),
        floor_height=rng.uniform(2.8, 4.0, m).astype(np.float32),
        window_colour=glass[rng.integers(len(glass), size=m)],
        texture=rng.uniform(0.03, 0.25, m).astype(np.float32),
    )


def _objects(n: int, **columns) -> Objects:
    zeros = np.zeros(n, np.float32)
    base = {"x": zeros, "s": zeros, "speed": zeros, "cross": zeros, "size": np.zeros((n, 3), np.float32),
            "colour": np.zeros((n, 3), np.float32), "colour2": np.zeros((n, 3), np.float32),
            "skin": np.zeros((n, 3), np.float32), "phase": zeros}
    base.update({k: np.asarray(v, np.float32) for k, v in columns.items()})
    return Objects(**base)


def _trees(rng, road_half: float, left_face: float, right_face: float, length: float) -> Objects:
    n = int(rng.integers(0, 3) * length / 25)  # none, sparse or regular rows of trees
    side = rng.choice([-1.0, 1.0], n)
    x = side * (road_half + rng.uniform(0.8, 1.5, n))
    crown = rng.uniform(1.2, 2.6, n)
    size = np.stack([crown, rng.uniform(2.0, 3.5, n), crown * rng.uniform(0.9, 1.3, n)], 1)  # crown r, trunk h, rv
    greens = np.array([[60, 110, 40], [90, 130, 50], [40, 80, 35], [110, 140, 60], [70, 100, 55]], np.float32)
    return _objects(n, x=x, s=rng.uniform(0, length, n), size=size,
                    colour=greens[rng.integers(len(greens), size=n)] * rng.uniform(0.75, 1.2, (n, 1)),
                    colour2=np.array([[90, 70, 50]]) * rng.uniform(0.7, 1.2, (n, 1)), phase=rng.uniform(0, 1000, n))


def _cars(rng, road_half: float, length: float) -> Objects:
    n_moving, n_parked = int(length / rng.uniform(12, 40)), int(length / rng.uniform(8, 30))
    lanes = np.array([-road_half / 2, road_half / 2])
    lane = rng.integers(2, size=n_moving)
    x_moving = lanes[lane] + rng.uniform(-0.4, 0.4, n_moving)
    # right lane drives away from the camera (+s), left lane comes towards it
    speed_moving = np.where(lane == 1, 1.0, -1.0) * rng.uniform(4.0, 14.0, n_moving)
    kerb_side = rng.choice([-1.0, 1.0], n_parked)
    x_parked = kerb_side * (road_half - rng.uniform(1.0, 1.3, n_parked))
    n = n_moving + n_parked
    kind = rng.random(n)  # cars, a few vans
    width = np.where(kind < 0.85, rng.uniform(1.65, 1.95, n), rng.uniform(1.9, 2.2, n))
    height = np.where(kind < 0.85, rng.uniform(1.35, 1.65, n), rng.uniform(1.9, 2.5, n))
    long = np.where(kind < 0.85, rng.uniform(3.8, 4.9, n), rng.uniform(4.8, 6.0, n))
    colour = _CAR_PAINTS[rng.integers(len(_CAR_PAINTS), size=n)] * rng.uniform(0.85, 1.1, (n, 1))
    return _objects(n, x=np.concatenate([x_moving, x_parked]), s=rng.uniform(0, length, n),
                    speed=np.concatenate([speed_moving, np.zeros(n_parked)]),
                    size=np.stack([width, height, long], 1), colour=np.clip(colour, 0, 255),
                    colour2=rng.uniform(0.25, 0.45, (n, 1)) * np.array([[0.8, 0.9, 1.0]]) * 255,
                    phase=kind)


def _people(rng, road_half: float, left_face: float, right_face: float, length: float,
            crossings: np.ndarray) -> Objects:
    n_walk = int(length / rng.uniform(3.0, 12.0))
    side = rng.choice([-1.0, 1.0], n_walk)
    inner = road_half + 0.4
    outer = np.where(side < 0, left_face, right_face) - 0.4
    x = side * rng.uniform(inner, np.maximum(outer, inner + 0.1))
    speed = rng.choice([-1.0, 1.0], n_walk) * rng.uniform(0.8, 1.7, n_walk) * (rng.random(n_walk) < 0.8)
    s = rng.uniform(0, length, n_walk)
    # Groups on the crossings walk across the road.
    n_cross = int(rng.integers(0, 4)) * len(crossings)
    x_c = rng.uniform(-road_half, road_half, n_cross)
    s_c = np.repeat(crossings, n_cross // max(len(crossings), 1)) + rng.uniform(-1.0, 1.0, n_cross)
    cross = rng.choice([-1.0, 1.0], n_cross) * rng.uniform(0.8, 1.5, n_cross)
    n = n_walk + n_cross
    height = rng.uniform(1.5, 1.95, n) * np.where(rng.random(n) < 0.1, 0.7, 1.0)  # some children
    clothes = rng.uniform(10, 240, (n, 3)) * np.where(rng.random((n, 1)) < 0.4, 0.35, 1.0)
    trousers = _pick_many(rng, [[30, 35, 60], [20, 20, 22], [90, 90, 95], [150, 130, 100], [60, 70, 110]], n)
    return _objects(n, x=np.concatenate([x, x_c]), s=np.concatenate([s, s_c]),
                    speed=np.concatenate([speed, np.zeros(n_cross)]),
                    cross=np.concatenate([np.zeros(n_walk), cross]),
                    size=np.stack([height * rng.uniform(0.24, 0.32, n), height, np.full(n, 0.3)], 1),
                    colour=clothes, colour2=trousers, skin=_SKIN[rng.integers(len(_SKIN), size=n)],
                    phase=rng.uniform(0, 2 * np.pi, n))


def _pick_many(rng, choices, n: int) -> np.ndarray:
    c = np.asarray(choices, np.float32)
    return c[rng.integers(len(c), size=n)] * rng.uniform(0.8, 1.2, (n, 1))


def _lighting(rng, road_half: float) -> Lighting:
    kind = rng.choice(["day", "day", "overcast", "golden", "dusk"])
    if kind == "day":
        top, horizon, gain, tint, clouds = [60, 120, 210], [175, 205, 235], 1.0, [1.0, 1.0, 1.0], 0.3
    elif kind == "overcast":
        top, horizon, gain, tint, clouds = [150, 155, 165], [200, 203, 208], 0.85, [0.97, 0.98, 1.02], 0.9
    elif kind == "golden":
        top, horizon, gain, tint, clouds = [90, 120, 190], [250, 200, 140], 0.95, [1.1, 0.98, 0.82], 0.35
    else:
        top, horizon, gain, tint, clouds = [35, 45, 90], [200, 130, 110], 0.6, [1.0, 0.9, 0.9], 0.25
    j = lambda c, a: np.clip(np.asarray(c, np.float32) + rng.uniform(-a, a, 3), 0, 255).astype(np.float32)
    return Lighting(
        gain=float(gain * rng.uniform(0.8, 1.15)), tint=j(tint, 0.04) / 1.0, sky_top=j(top, 20),
        sky_horizon=j(horizon, 15), clouds=float(np.clip(clouds + rng.uniform(-0.2, 0.2), 0, 1)),
        sun_side=int(rng.choice([-1, 1])), shadow=float(rng.uniform(0.0, 0.55) * (kind != "overcast")),
        shadow_x=float(rng.uniform(-road_half, road_half)), visibility=float(rng.uniform(250, 1500)),
    )
