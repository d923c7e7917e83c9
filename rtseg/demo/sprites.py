"""Trees, cars and people, painted far to near into the frame, the label map and the depth map.

Every part is a convex polygon or a disc projected from metres in the world; the same primitive is drawn into the
image (its colour), the labels (its class) and the depth (its distance), so labels follow occlusion exactly.
Polygons are rasterised by OpenCV with 4 bits of sub-pixel precision and no anti-aliasing, so a pixel's colour
and its label always come from the same primitive.
"""

from __future__ import annotations

import numpy as np

from .world import CAR, PERSON, VEGETATION, StreetWorld

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


class Canvas:
    """The three layers being painted, and the camera that projects world points onto them."""

    def __init__(self, img, labels, depth, cam, f, cx, cy):
        import cv2

        self.cv2, self.img, self.labels, self.depth = cv2, img, labels, depth
        self.cam, self.f, self.cx, self.cy = cam, f, cx, cy
        self.width = img.shape[1]

    def project(self, x, y, z) -> np.ndarray:
        """World points (metres; ``z`` the distance ahead) -> fixed-point pixel coordinates ``(N, 2)`` int32."""
        x, y, z = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
        n = max(x.size, y.size, z.size)
        out = np.empty((n, 2), np.float64)
        out[:, 0] = self.cx + self.f * (x - self.cam.x) / z
        out[:, 1] = self.cy - self.f * (y - self.cam.height) / z
        return np.rint(out * _ONE).astype(np.int32)

    def poly(self, pts: np.ndarray, colour, label: int | None, z: float) -> None:
        cv2 = self.cv2
        cv2.fillConvexPoly(self.img, pts, tuple(float(c) for c in colour), cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.fillConvexPoly(self.labels, pts, int(label), cv2.LINE_8, _SHIFT)
            cv2.fillConvexPoly(self.depth, pts, float(z), cv2.LINE_8, _SHIFT)

    def disc(self, centre: np.ndarray, radius_px: float, colour, label: int, z: float) -> None:
        cv2 = self.cv2
        c = (int(centre[0]), int(centre[1]))
        r = max(round(radius_px * _ONE), _ONE // 2)
        cv2.circle(self.img, c, r, tuple(float(v) for v in colour), -1, cv2.LINE_8, _SHIFT)
        cv2.circle(self.labels, c, r, int(label), -1, cv2.LINE_8, _SHIFT)
        cv2.circle(self.depth, c, r, float(z), -1, cv2.LINE_8, _SHIFT)

    def quad(self, x0, x1, y0, y1, z, colour, label, zd=None) -> None:
        """An upright rectangle facing the camera, ``x0..x1`` by ``y0..y1`` at distance ``z``."""
        pts = self.project([x0, x1, x1, x0], [y0, y0, y1, y1], z)
        self.poly(pts, colour, label, z if zd is None else zd)


def paint(world: StreetWorld, cam, t: float, img, labels, depth, f, cx, cy, near: float, far: float) -> None:
    """Paint every visible object of ``world`` at time ``t`` onto the layers, farthest first."""
    canvas = Canvas(img, labels, depth, cam, f, cx, cy)
    items = []
    for kind, objs in (("tree", world.trees), ("car", world.cars), ("person", world.people)):
        if len(objs.x) == 0:
            continue
        s = objs.s + objs.speed * t
        x = objs.x.copy()
        if kind == "person":
            # people on a crossing walk back and forth across the road
            span = world.road_half + 1.5
            moving = objs.cross != 0
            pos = np.mod(objs.x[moving] + span + objs.cross[moving] * t, 4 * span)
            x[moving] = np.abs(pos - 2 * span) - span
        z = np.mod(s - cam.s, world.length)  # the instance ahead of the camera in the periodic street
        half = np.float32(objs.size[:, 2] / 2)
        visible = (z - half > near) & (z < far)
        u = cx + f * (x - cam.x) / np.maximum(z, 1e-3)
        visible &= np.abs(u - img.shape[1] / 2) < img.shape[1] * 0.5 + f * 4.0 / np.maximum(z, 1e-3)
        for i in np.nonzero(visible)[0]:
            items.append((float(z[i]), kind, int(i), float(x[i])))
    items.sort(key=lambda it: -it[0])
    for z, kind, i, x in items:
        if kind == "tree":
            _tree(canvas, world.trees, i, x, z)
        elif kind == "car":
            _car(canvas, world.cars, i, x, z)
        else:
            _person(canvas, world.people, i, x, z, t)


def _tree(c: Canvas, trees, i: int, x: float, z: float) -> None:
    r, trunk_h, rv = (float(v) for v in trees.size[i])
    rng = np.random.default_rng(int(trees.phase[i]))
    half = 0.08 + 0.05 * r
    c.quad(x - half, x + half, 0.0, trunk_h + rv * 0.5, z, trees.colour2[i], VEGETATION)
    centre_y = trunk_h + rv
    scale = c.f / z  # pixels per metre
    clumps = int(np.clip(scale * r / 4, 0, 14))
    offsets = rng.uniform(-1, 1, (clumps, 2)) * [r * 0.6, rv * 0.6]
    radii = rng.uniform(0.45, 0.65, clumps) * r
    shades = rng.uniform(0.7, 1.25, clumps)
    centre = c.project(x, centre_y, z)[0]
    c.disc(centre, r * 0.75 * scale, trees.colour[i] * 0.8, VEGETATION, z)
    for (dx, dy), rad, sh in zip(offsets, radii, shades):
        c.disc(c.project(x + dx, centre_y + dy, z)[0], rad * scale, trees.colour[i] * sh, VEGETATION, z)


def _car(c: Canvas, cars, i: int, x: float, z: float) -> None:
    width, height, length = (float(v) for v in cars.size[i])
    paint, glass = cars.colour[i], cars.colour2[i]
    if c.f * height / z < 8:  # a few pixels tall: the silhouette is all that shows
        c.quad(x - width / 2, x + width / 2, 0.0, height * 0.6, z - length / 2, paint * 0.85, CAR)
        c.quad(x - width / 2 + 0.1, x + width / 2 - 0.1, height * 0.6, height, z - length / 4, glass, CAR)
        return
    van = cars.phase[i] >= 0.85
    oncoming = cars.speed[i] < 0
    z0, z1 = z - length / 2, z + length / 2
    xl, xr = x - width / 2, x + width / 2
    belt = height * (0.7 if van else 0.55)  # top of the lower body
    cab0, cab1 = (z0 + 0.1 * length, z1 - 0.05 * length) if van else (z0 + 0.28 * length, z1 - 0.3 * length)
    if oncoming and not van:
        cab0, cab1 = z0 + 0.3 * length, z1 - 0.28 * length
    inset = 0.1
    # the shadow on the road under the car (not labelled: the road stays road)
    pts = c.project([xl - 0.05, xr + 0.05, xr + 0.05, xl - 0.05], [0.0] * 4, [z0 - 0.1, z0 - 0.1, z1, z1])
    c.poly(pts, (25, 25, 28), None, z)
    # the side face nearest the camera axis, if the car is off to one side
    side_x = xl if xl > c.cam.x else (xr if xr < c.cam.x else None)
    if side_x is not None:
        c.poly(c.project(side_x, [0.22, 0.22, belt, belt], [z0, z1, z1, z0]), paint * 0.72, CAR, z)
        for axle in (z0 + 0.75, z1 - 0.75):
            _wheel(c, side_x, axle, z)
        c.poly(c.project(side_x + np.sign(x - c.cam.x) * inset, [belt, belt, height, height],
                         [cab0, cab1, cab1 - 0.15, cab0 + 0.2]), glass, CAR, z)
    # top of the lower body (bonnet/boot), seen from above
    if c.cam.height > belt:
        c.poly(c.project([xl, xr, xr, xl], [belt] * 4, [z0, z0, z1, z1]), paint * 1.08, CAR, z)
    # cabin: roof, and the rear (or front) window framed by the paint
    if c.cam.height > height:
        c.poly(c.project([xl + inset, xr - inset, xr - inset, xl + inset], [height] * 4, [cab0, cab0, cab1, cab1]),
               paint * 1.1, CAR, z)
    c.poly(c.project([xl + inset, xr - inset, xr - inset, xl + inset], [belt, belt, height, height],
                     [cab0 - 0.2, cab0 - 0.2, cab0, cab0]), paint * 0.9, CAR, z0)
    c.poly(c.project([xl + 0.2, xr - 0.2, xr - 0.25, xl + 0.25], [belt + 0.05, belt + 0.05, height - 0.08,
                     height - 0.08], [cab0 - 0.18, cab0 - 0.18, cab0, cab0]), glass * 1.1, CAR, z0)
    # the near face: bumper, lights, plate, tyres
    c.quad(xl, xr, 0.22, belt, z0, paint * 0.85, CAR)
    for wx in (xl + 0.05, xr - 0.32):
        c.quad(wx, wx + 0.27, 0.0, 0.3, z0 + 0.3, (18, 18, 20), CAR, z0)
    lamp = (240, 235, 200) if oncoming else (200, 25, 25)
    lamp_y = belt - 0.18
    c.quad(xl + 0.08, xl + 0.38, lamp_y - 0.1, lamp_y + 0.08, z0 - 0.01, lamp, CAR, z0)
    c.quad(xr - 0.38, xr - 0.08, lamp_y - 0.1, lamp_y + 0.08, z0 - 0.01, lamp, CAR, z0)
    c.quad(x - 0.26, x + 0.26, 0.3, 0.42, z0 - 0.01, (225, 225, 215), CAR, z0)
    c.quad(xl, xr, 0.2, 0.3, z0 - 0.02, (35, 35, 38), CAR, z0)  # bumper


def _wheel(c: Canvas, side_x: float, axle_z: float, z: float) -> None:
    pts = c.project(side_x, 0.33 + 0.33 * np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
                    axle_z + 0.33 * np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)))
    c.poly(pts, (20, 20, 22), CAR, z)


def _person(c: Canvas, people, i: int, x: float, z: float, t: float) -> None:
    shoulders, h = float(people.size[i, 0]), float(people.size[i, 1])
    if c.f * h / z < 10:  # a few pixels tall: legs, body and head as three shapes
        c.quad(x - shoulders * 0.35, x + shoulders * 0.35, 0.0, 0.5 * h, z, people.colour2[i], PERSON)
        c.quad(x - shoulders / 2, x + shoulders / 2, 0.5 * h, 0.84 * h, z, people.colour[i], PERSON)
        c.quad(x - 0.06 * h, x + 0.06 * h, 0.84 * h, h, z, people.skin[i], PERSON)
        return
    moving = people.speed[i] != 0 or people.cross[i] != 0
    step = np.sin(people.phase[i] + t * 7.0) if moving else 0.0
    swing = 0.07 * h * step
    clothes, trousers, skin = people.colour[i], people.colour2[i], people.skin[i]
    hip, shoulder_y = 0.5 * h, 0.81 * h
    leg = 0.055 * h
    # legs: hip to foot, the feet swinging in opposite phase
    for side, sw in ((-1, swing), (1, -swing)):
        hx = x + side * 0.045 * h
        fx = hx + sw
        c.poly(c.project([hx - leg, hx + leg, fx + leg * 0.8, fx - leg * 0.8], [hip, hip, 0.0, 0.0], z),
               trousers * (1.0 + 0.08 * side), PERSON, z)
        c.quad(fx - leg * 1.1, fx + leg * 1.1, 0.0, 0.035 * h, z, (30, 28, 26), PERSON)
    # arms behind the torso's edges, swinging against the legs
    for side, sw in ((-1, -swing), (1, swing)):
        sx = x + side * shoulders / 2
        hx = sx + side * 0.02 * h + 0.6 * sw
        arm = 0.035 * h
        c.poly(c.project([sx - arm, sx + arm, hx + arm, hx - arm], [shoulder_y, shoulder_y, 0.45 * h, 0.45 * h],
                         z), clothes * 0.85, PERSON, z)
        scale = c.f / z
        c.disc(c.project(hx, 0.44 * h, z)[0], 0.035 * h * scale, skin, PERSON, z)
    # torso, neck, head and hair
    c.poly(c.project([x - shoulders * 0.42, x + shoulders * 0.42, x + shoulders / 2, x - shoulders / 2],
                     [hip - 0.02 * h, hip - 0.02 * h, shoulder_y, shoulder_y], z), clothes, PERSON, z)
    c.quad(x - 0.025 * h, x + 0.025 * h, shoulder_y - 0.01 * h, 0.88 * h, z, skin * 0.9, PERSON)
    scale = c.f / z
    c.disc(c.project(x, 0.915 * h, z)[0], 0.062 * h * scale, skin, PERSON, z)
    hair = (40, 30, 20) if people.phase[i] % 1.0 < 0.7 else (150, 120, 70)
    c.disc(c.project(x, 0.94 * h, z)[0], 0.05 * h * scale, hair, PERSON, z)
