"""Movement modes and GPS noise for the presence-quality harness.

A track is the noiseless trajectory (piecewise-linear legs, which are the ground truth) and the
fixes a phone would report along it. Noise, per fix:
- reported accuracy is the 68 % radius; the true error's spread is a per-track share (0.6-1.0,
  phones over-report) of it: per-axis sigma = share * accuracy / 1.51;
- correlated drift (an Ornstein-Uhlenbeck process, 2 m, 60 s);
- urban-canyon bias outdoors: a constant offset across the street, per street leg (0-2.5 m);
- outliers: about 2 % of fixes land 3-6 sigma away in a random direction;
- gaps: dropped fixes and, now and then, 30-120 s without any;
- indoors the accuracy figures are worse (and so is the error); someone waiting under an arcade
  or a deep awning gets the same worse figures outdoors (the case where they mislead).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from shapely.geometry import Point

from bench.quality.scenes import BLOCK_H, BLOCK_W, Block, Place, Scene

SIGMA_PER_ACCURACY = 1 / 1.51  # a 2-D Gaussian's 68 % radius is 1.51 sigma


@dataclass(frozen=True)
class Leg:
    t0: float
    t1: float
    x0: float
    y0: float
    x1: float
    y1: float
    indoor: bool = False
    bias: tuple[float, float] = (0.0, 0.0)  # canyon bias while on this leg
    covered: bool = False  # outdoors, but with indoor accuracy (an arcade, a deep awning)

    def at(self, t: float) -> tuple[float, float]:
        if self.t1 <= self.t0:
            return self.x1, self.y1
        f = min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0)))
        return self.x0 + f * (self.x1 - self.x0), self.y0 + f * (self.y1 - self.y0)


@dataclass(frozen=True)
class TrueFix:
    """One reported fix and where the phone truly was."""

    t: float
    x: float  # reported
    y: float
    accuracy_m: float
    true_x: float
    true_y: float
    outlier: bool
    speed_mps: float | None = None  # as the phone reports it (Doppler): the true speed, +-0.3


@dataclass
class Track:
    mode: str
    legs: list[Leg]
    fixes: list[TrueFix] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.legs[-1].t1 - self.legs[0].t0

    def _first_ending_by(self, t: float) -> int:
        """The index of the first leg ending at or after t (legs are in time order)."""
        return bisect.bisect_left(self.legs, t, key=lambda leg: leg.t1)

    def at(self, t: float) -> tuple[float, float]:
        return self.legs[min(self._first_ending_by(t), len(self.legs) - 1)].at(t)

    def leg_at(self, t: float) -> Leg:
        """The first leg whose span holds t (the last leg past the end)."""
        for i in range(self._first_ending_by(t), len(self.legs)):
            if self.legs[i].t0 <= t <= self.legs[i].t1:
                return self.legs[i]
        return self.legs[-1]


class Route:
    """Builds legs one after another (a turtle with a clock)."""

    def __init__(self, x: float, y: float, rng: random.Random) -> None:
        self.x, self.y, self.t = x, y, 0.0
        self.legs: list[Leg] = []
        self.rng = rng
        self.bias = (0.0, 0.0)

    def street(self, max_bias: float) -> None:
        """A new street: a new canyon bias, across it (set before the legs along it)."""
        self.bias = (self.rng.uniform(-max_bias, max_bias), self.rng.uniform(-max_bias, max_bias))

    def go(self, x: float, y: float, speed: float, indoor: bool = False) -> None:
        d = math.hypot(x - self.x, y - self.y)
        if d < 1e-9:
            return
        t1 = self.t + d / speed
        self.legs.append(Leg(self.t, t1, self.x, self.y, x, y, indoor, self.bias))
        self.x, self.y, self.t = x, y, t1

    def stay(self, seconds: float, indoor: bool = False, covered: bool = False) -> None:
        if seconds <= 0:
            return
        t1 = self.t + seconds
        self.legs.append(
            Leg(self.t, t1, self.x, self.y, self.x, self.y, indoor, self.bias, covered)
        )
        self.t = t1


def _ring(block: Block, p: float) -> list[tuple[float, float]]:
    """The block's corners pushed out by p (SW, SE, NE, NW): a pavement or a lane around it."""
    x0, y0 = block.x0 - p, block.y0 - p
    x1, y1 = block.x0 + BLOCK_W + p, block.y0 + BLOCK_H + p
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _frontage_buildings(
    block: Block, a: tuple[float, float], b: tuple[float, float]
) -> list[Place]:
    """Buildings whose facade faces the side a->b of the block's ring, in walking order."""
    if block.park or abs(a[1] - b[1]) > 1e-6:
        return []  # only the long (east-west) sides have frontages
    south = a[1] < block.y0 + BLOCK_H / 2
    out = []
    for p in block.buildings:
        minx, miny, maxx, maxy = p.poly.bounds
        if (south and abs(miny - block.y0) < 1e-6) or (
            not south and abs(maxy - (block.y0 + BLOCK_H)) < 1e-6
        ):
            out.append(p)
    out.sort(key=lambda p: p.poly.bounds[0], reverse=b[0] < a[0])
    return out


def _visit(route: Route, place: Place, facade_y: float, inward: float, speed: float) -> None:
    """From the pavement opposite the building's middle, in through a door, stay, and out."""
    minx, miny, maxx, maxy = place.poly.bounds
    rng = route.rng
    x = (minx + maxx) / 2 + rng.uniform(-0.25, 0.25) * (maxx - minx)
    if place.kind == "courtyard":
        depth = rng.uniform(2.0, 4.0)  # the wing around the courtyard is 8 m deep
    else:
        depth = rng.uniform(3.0, max(3.5, min(25.0, (maxy - miny) - 3.0)))
    start = (route.x, route.y)
    route.go(x, route.y, speed)
    route.go(x, facade_y, speed)
    route.go(x, facade_y + inward * depth, speed, indoor=True)
    route.stay(
        rng.choice([rng.uniform(30, 120), rng.uniform(120, 600), rng.uniform(600, 1500)]),
        indoor=True,
    )
    route.go(x, facade_y, speed, indoor=True)
    route.go(x, start[1], speed)


def street_route(
    scene: Scene,
    rng: random.Random,
    *,
    duration_s: float,
    speed: float,
    offset: tuple[float, float],
    visit_p: float = 0.0,
    pause_s: tuple[float, float] = (0.0, 0.0),
    stop_every_m: float = 0.0,
    stop_s: tuple[float, float] = (0.0, 0.0),
    park_paths: bool = False,
) -> Route:
    """Around blocks along their rings (`offset` metres from the facades), crossing streets."""
    i, j = rng.randrange(scene.columns), rng.randrange(scene.rows)
    corner = rng.randrange(4)
    p = rng.uniform(*offset)
    ring = _ring(scene.blocks[i][j], p)
    route = Route(*ring[corner], rng)
    since_stop = 0.0
    while route.t < duration_s:
        block = scene.blocks[i][j]
        ring = _ring(block, p)
        if park_paths and block.park and rng.random() < 0.5:
            # across the park on its diagonal footpath, to the opposite corner
            route.street(0.0)
            target = ring[(corner + 2) % 4]
            route.go(target[0], target[1], speed)
            corner = (corner + 2) % 4
            continue
        step = rng.choice([1, -1])
        nxt = (corner + step) % 4
        a, b = ring[corner], ring[nxt]
        route.street(2.5)
        buildings = _frontage_buildings(block, a, b) if visit_p else []
        facade_y = block.y0 if a[1] < block.y0 + BLOCK_H / 2 else block.y0 + BLOCK_H
        inward = 1.0 if a[1] < block.y0 + BLOCK_H / 2 else -1.0
        for place in buildings:
            if rng.random() < visit_p:
                _visit(route, place, facade_y, inward, speed)
        if stop_every_m:
            # stops along the side (a bus at the kerb)
            length = math.hypot(b[0] - a[0], b[1] - a[1])
            pos = 0.0
            while pos + (stop_every_m - since_stop) < length:
                pos += stop_every_m - since_stop
                since_stop = 0.0
                f = pos / length
                route.go(a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), speed)
                route.stay(rng.uniform(*stop_s))
            since_stop += length - pos
        route.go(b[0], b[1], speed)
        corner = nxt
        if pause_s[1] > 0:
            route.stay(rng.uniform(*pause_s))  # waiting at the kerb before crossing
        # cross to the neighbouring block in the direction just walked, if there is one
        di = (1 if b[0] > a[0] else -1) if abs(b[0] - a[0]) > 1e-6 else 0
        dj = (1 if b[1] > a[1] else -1) if abs(b[1] - a[1]) > 1e-6 else 0
        ni, nj = i + di, j + dj
        if rng.random() < 0.6 and 0 <= ni < scene.columns and 0 <= nj < scene.rows:
            i, j = ni, nj
            p = rng.uniform(*offset)
            # the neighbour's ring corner on our side of the street, straight across
            nring = _ring(scene.blocks[i][j], p)
            best = min(range(4), key=lambda k: math.hypot(nring[k][0] - b[0], nring[k][1] - b[1]))
            corner = best
            route.street(0.0)
            route.go(nring[best][0], nring[best][1], speed)
    return route


def through_parks(scene: Scene, rng: random.Random, *, duration_s: float, speed: float) -> Route:
    """A car along a road that crosses a park and runs on through the town, end to end and
    back (a U-turn 50-150 m beyond the town's last street)."""
    road = rng.choice(scene.park_roads)
    (xw, y), (xe, _) = road.coords[0], road.coords[-1]
    ends = [(xw - rng.uniform(50, 150), y), (xe + rng.uniform(50, 150), y)]
    route = Route(*ends[0], rng)
    while route.t < duration_s:
        route.street(1.5)
        route.go(*ends[1], speed)
        ends.reverse()
    return route


def stationary(x: float, y: float, seconds: float, indoor: bool, rng: random.Random) -> Route:
    route = Route(x, y, rng)
    route.stay(seconds, indoor=indoor)
    return route


def point_inside(place: Place, rng: random.Random, min_depth: float, max_depth: float) -> Point:
    minx, miny, maxx, maxy = place.poly.bounds
    for _ in range(10_000):
        pt = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if min_depth <= -place.signed(pt.x, pt.y) <= max_depth:
            return pt
    raise ValueError("no point at that depth")


@dataclass(frozen=True)
class Noise:
    every_s: float
    accuracy: Callable[[random.Random, bool], float]  # (rng, indoor) -> reported accuracy
    share: tuple[float, float] = (0.6, 1.0)  # true sigma / (accuracy / 1.51), per track
    drift_m: float = 2.0
    drift_tau_s: float = 60.0
    outliers: float = 0.02
    drop: float = 0.03
    gap_every_s: float = 600.0  # mean time between longer gaps (0: none)
    gap_s: tuple[float, float] = (30.0, 120.0)
    fixed_sigma_m: float | None = None  # per-axis noise, overriding the accuracy share


def lognormal_accuracy(
    outdoor: float, indoor: float, low: float, high: float
) -> Callable[[random.Random, bool], float]:
    def draw(rng: random.Random, is_indoor: bool) -> float:
        mid = indoor if is_indoor else outdoor
        return round(min(high, max(low, rng.lognormvariate(math.log(mid), 0.35))), 1)

    return draw


def fixed_accuracy(value: float) -> Callable[[random.Random, bool], float]:
    return lambda rng, indoor: value


def sample(route: Route, mode: str, noise: Noise, rng: random.Random) -> Track:
    track = Track(mode, route.legs)
    end = route.t
    share = rng.uniform(*noise.share)
    dx = dy = 0.0  # drift
    t = rng.uniform(0, noise.every_s)
    prev_t = t
    next_gap = rng.expovariate(1 / noise.gap_every_s) if noise.gap_every_s else math.inf
    while t <= end:
        if t >= next_gap:
            t += rng.uniform(*noise.gap_s)
            next_gap = t + rng.expovariate(1 / noise.gap_every_s)
            continue
        step = t - prev_t
        prev_t = t
        if noise.drift_m:
            decay = math.exp(-step / noise.drift_tau_s)
            kick = noise.drift_m * math.sqrt(1 - decay * decay)
            dx = dx * decay + rng.gauss(0, kick)
            dy = dy * decay + rng.gauss(0, kick)
        leg = track.leg_at(t)
        tx, ty = leg.at(t)
        acc = noise.accuracy(rng, leg.indoor or leg.covered)
        sigma = noise.fixed_sigma_m or share * acc * SIGMA_PER_ACCURACY
        ex, ey = rng.gauss(0, sigma), rng.gauss(0, sigma)
        outlier = rng.random() < noise.outliers
        if outlier:
            angle = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(3, 6) * sigma
            ex, ey = r * math.cos(angle), r * math.sin(angle)
        bx, by = (0.0, 0.0) if leg.indoor else leg.bias
        if rng.random() >= noise.drop:
            moving = leg.t1 > leg.t0 and (leg.x0, leg.y0) != (leg.x1, leg.y1)
            true_speed = (
                math.hypot(leg.x1 - leg.x0, leg.y1 - leg.y0) / (leg.t1 - leg.t0) if moving else 0.0
            )
            speed = max(0.0, round(true_speed + rng.gauss(0, 0.3), 1))
            track.fixes.append(
                TrueFix(
                    round(t, 3), tx + ex + dx + bx, ty + ey + dy + by, acc, tx, ty, outlier, speed
                )
            )
        t += noise.every_s + rng.uniform(-1.0, 1.0)
    return track
