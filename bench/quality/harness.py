"""Run presence engines on generated tracks and judge every event against ground truth.

The resolver here is the ping read's (migration 0019 onwards) in Python, on the scene's metric
plane: for each fix the places within their trigger distance + its window, plus every
place the subject has a presence row for (at any distance), with signed distances; for each
segment between consecutive evaluated fixes the places it crosses. The engine is then called
exactly as `app.presence.service` calls it, batch after batch, carrying its states and last fix
forward, so what is measured here is the production engine (tests/presence/test_quality.py
checks a track through the real API gives the same events).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from shapely.geometry import Point

from app.presence import engine as current_engine
from bench.quality import legacy, osm
from bench.quality.scenes import Place, Scene, from_lonlat, make_scene, to_lonlat
from bench.quality.tracks import (
    Noise,
    Route,
    Track,
    fixed_accuracy,
    lognormal_accuracy,
    point_inside,
    sample,
    stationary,
    street_route,
    through_parks,
)

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ANCHOR_MARGIN_M = 25.0  # the ping read's reach beyond a place's trigger distance for a stay mean
TOLERANCE_M = 3.0  # an enter is right if the person was inside or within this of the place
PLAUSIBLE_CROSSING_MPS = 35.0  # faster than this through a place is not a real crossing
LEFT_M = 30.0  # a visit ends when the person truly goes this far from the place


@dataclass(frozen=True)
class Event:
    type: str
    place: uuid.UUID
    fix: int  # index into the track's fixes
    t: float
    explanation: dict[str, Any]
    from_t: float | None = None  # passed_through: the earlier fix's time


# --- engines ------------------------------------------------------------------------------------


class EngineRunner:
    """Feeds a track to an engine module (current or legacy) in batches, as the service does."""

    def __init__(self, module: ModuleType, params: Any, name: str, t0: datetime = T0) -> None:
        self.m = module
        self.params = params
        self.name = name
        self.t0 = t0  # the time of the track's second 0

    def run(self, scene: Scene, track: Track, batch: int) -> list[Event]:
        m, params = self.m, self.params
        states: dict[uuid.UUID, Any] = {}
        last: Any = None
        stay: Any = None
        stays = hasattr(m, "stay_anchors")
        xy: dict[datetime, tuple[float, float]] = {}
        out: list[Event] = []
        max_trigger = max(p.trigger_distance_m for p in scene.places)
        anchor_reads: dict[tuple[float, float], list[Any]] = {}
        for b0 in range(0, len(track.fixes), batch):
            chunk = track.fixes[b0 : b0 + batch]
            fixes = []
            # where each fix is measured: its coordinates as stored (6 decimals), in metres
            where: list[tuple[float, float]] = []
            for k, tf in enumerate(chunk):
                lon, lat = to_lonlat(tf.x, tf.y)
                where.append(from_lonlat(round(lon, 6), round(lat, 6)))
                at = self.t0 + timedelta(seconds=tf.t)
                xy[at] = where[k]
                fixes.append(
                    m.Fix(
                        idx=k,
                        client_id=f"{b0 + k:07d}",
                        recorded_at=at,
                        lon=round(lon, 6),
                        lat=round(lat, 6),
                        accuracy_m=tf.accuracy_m,
                        speed_mps=tf.speed_mps,
                        heading=None,
                        quality=m.base_quality(tf.accuracy_m, params),
                    )
                )
            m.mark_late_and_jumps(fixes, last, params)
            candidates: dict[int, list[Any]] = {}
            read = [f for f in fixes if f.quality.value in ("ok", "implausible_jump")]
            # the read's window beyond a place's trigger distance (engine.window_m; the
            # previous rules' read used the margin itself)
            windows = [
                m.window_m(f, params) if hasattr(m, "window_m") else f.margin(params) for f in read
            ]
            nearby = scene.signed_near(
                [where[f.idx] for f in read], [max_trigger + w for w in windows]
            )
            for f, window, near in zip(read, windows, nearby, strict=True):
                found: list[Any] = []
                seen: set[uuid.UUID] = set()
                for place, s in near:
                    if s <= place.trigger_distance_m + window or place.id in states:
                        found.append(_candidate(m, place, s))
                        seen.add(place.id)
                for gid in states:
                    if gid not in seen:
                        place = scene.place(gid)
                        found.append(_candidate(m, place, place.signed(*where[f.idx])))
                candidates[f.idx] = found
            crossings: dict[int, list[Any]] = {}
            pairs = m.segments(fixes, last, params)
            crossed = scene.crossed([(*xy[a.recorded_at], *where[b.idx]) for a, b in pairs])
            for (_, b), places in zip(pairs, crossed, strict=True):
                for place, from_a, from_b, depth in places:
                    crossings.setdefault(b.idx, []).append(
                        m.Crossing(
                            b.idx, place.id, from_a, from_b, True, *((depth,) if stays else ())
                        )
                    )
            if stays:
                # the stored stay's mean (the ping read resolves it) and any this batch reaches
                points = m.stay_anchors(fixes, stay, last, params)
                if stay is not None and stay.anchor is not None:
                    points.append(stay.anchor)
                # a stay's mean stays put for many batches: each point is read once per track
                for mean in points:
                    if mean not in anchor_reads:
                        anchor_reads[mean] = _anchor_candidates(m, scene, *mean)
                anchors = {mean: anchor_reads[mean] for mean in points}
                outcome = m.evaluate(
                    fixes, candidates, crossings, states, last, params, stay, anchors
                )
                stay = outcome.stay
            else:
                outcome = m.evaluate(fixes, candidates, crossings, states, last, params)
            for tr in outcome.transitions:
                if tr.suppressed_reason is None:
                    tf = chunk[tr.fix.idx]
                    came = tr.explanation.get("from_fix_at")
                    from_t = (
                        (datetime.fromisoformat(came) - self.t0).total_seconds() if came else None
                    )
                    out.append(
                        Event(
                            tr.type.value,
                            tr.geofence_id,
                            b0 + tr.fix.idx,
                            tf.t,
                            tr.explanation,
                            from_t,
                        )
                    )
            states = dict(outcome.states)
            last = outcome.last_fix
        return out


def _anchor_candidates(m: ModuleType, scene: Scene, lon: float, lat: float) -> list[Any]:
    """Places within their trigger distance + 25 m of a stay's mean (as the ping read returns
    them)."""
    x, y = from_lonlat(lon, lat)
    max_trigger = max(p.trigger_distance_m for p in scene.places)
    out = []
    pt = Point(x, y)
    for place in scene.near(pt, max_trigger + ANCHOR_MARGIN_M):
        s = place.signed(x, y, pt)
        if s <= place.trigger_distance_m + ANCHOR_MARGIN_M:
            out.append(_candidate(m, place, s))
    return out


def _candidate(m: ModuleType, place: Place, s: float) -> Any:
    return m.Candidate(place.id, s, place.trigger_distance_m, place.dwell_s, True)


class NaiveRunner:
    """Plain point-in-polygon, what AWS Location and Traccar do: enter when the fix is inside,
    exit when it is not, whatever its accuracy; a dwell once per stay of dwell_s."""

    name = "point-in-polygon"

    def run(self, scene: Scene, track: Track, batch: int) -> list[Event]:
        inside: dict[uuid.UUID, tuple[float, bool]] = {}
        out: list[Event] = []
        for i, tf in enumerate(track.fixes):
            now = {p.id for p in scene.containing(tf.x, tf.y)}
            for gid in sorted(set(inside) - now, key=str):
                del inside[gid]
                out.append(Event("exit", gid, i, tf.t, {}))
            for gid in sorted(now - set(inside), key=str):
                inside[gid] = (tf.t, False)
                out.append(Event("enter", gid, i, tf.t, {}))
            for gid in sorted(now, key=str):
                since, dwelt = inside[gid]
                if not dwelt and tf.t - since >= scene.place(gid).dwell_s:
                    inside[gid] = (since, True)
                    out.append(Event("dwell", gid, i, tf.t, {}))
        return out


def current_runner(params: Any | None = None, t0: datetime = T0) -> EngineRunner:
    return EngineRunner(current_engine, params or current_engine.Params(), "new engine", t0)


def legacy_runner() -> EngineRunner:
    return EngineRunner(legacy, legacy.Params(), "previous rules")


# --- scenarios ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    mode: str
    make: Callable[[Scene, random.Random], Track]
    stationary: bool = False


WALK_NOISE = Noise(10.0, lognormal_accuracy(10.0, 16.0, 5.0, 20.0))
VEHICLE_NOISE = Noise(10.0, lognormal_accuracy(9.0, 9.0, 5.0, 20.0))


def _walk(scene: Scene, rng: random.Random) -> Track:
    if isinstance(scene, osm.MapScene):
        route = osm.network_route(
            scene, scene.walk, rng, duration_s=2700, speed=1.4, visit_p=0.12, pause_s=(0.0, 40.0)
        )
        return sample(route, "walk", WALK_NOISE, rng)
    route = street_route(
        scene,
        rng,
        duration_s=2700,
        speed=1.4,
        offset=(2.0, 6.0),
        visit_p=0.12,
        pause_s=(0.0, 40.0),
        park_paths=True,
    )
    return sample(route, "walk", WALK_NOISE, rng)


def _cycle(scene: Scene, rng: random.Random) -> Track:
    if isinstance(scene, osm.MapScene):
        route = osm.network_route(
            scene, scene.roads, rng, duration_s=1800, speed=5.0, pause_s=(0.0, 20.0)
        )
        return sample(route, "cycle", VEHICLE_NOISE, rng)
    route = street_route(
        scene,
        rng,
        duration_s=1800,
        speed=5.0,
        offset=(6.0, 9.0),
        pause_s=(0.0, 20.0),
        park_paths=True,
    )
    return sample(route, "cycle", VEHICLE_NOISE, rng)


def _bus(scene: Scene, rng: random.Random) -> Track:
    if isinstance(scene, osm.MapScene):
        route = osm.network_route(
            scene,
            scene.roads,
            rng,
            duration_s=1800,
            speed=8.0,
            stop_every_m=250.0,
            stop_s=(20.0, 45.0),
        )
        return sample(route, "bus", VEHICLE_NOISE, rng)
    route = street_route(
        scene,
        rng,
        duration_s=1800,
        speed=8.0,
        offset=(4.0, 5.0),
        stop_every_m=250.0,
        stop_s=(20.0, 45.0),
    )
    return sample(route, "bus", VEHICLE_NOISE, rng)


def _car_park(scene: Scene, rng: random.Random) -> Track:
    speed = rng.uniform(9.0, 14.0)
    if isinstance(scene, osm.MapScene):
        # a real map's roads pass parks rather than cross them: cars on every road
        route = osm.network_route(scene, scene.roads, rng, duration_s=1800, speed=speed)
        mode = "car"
    else:
        route = through_parks(scene, rng, duration_s=1800, speed=speed)
        mode = "car through a park"
    every = rng.choice([5.0, 15.0, 30.0])
    noise = Noise(every, lognormal_accuracy(8.0, 8.0, 5.0, 20.0))
    return sample(route, mode, noise, rng)


def _buildings(scene: Scene, min_width: float, courtyards: bool = True) -> list[Place]:
    kinds = ("building", "courtyard") if courtyards else ("building",)
    return [p for p in scene.places if p.kind in kinds and p.width_m >= min_width]


def _desk(scene: Scene, rng: random.Random) -> Track:
    place = rng.choice(_buildings(scene, 12.0, courtyards=False))
    pt = point_inside(place, rng, 3.0, 30.0)
    route = stationary(pt.x, pt.y, 3600, True, rng)
    noise = Noise(10.0, lognormal_accuracy(15.0, 15.0, 5.0, 30.0))
    return sample(route, "desk inside", noise, rng)


def edge_noise() -> Noise:
    # the case: accuracy 15 m, noise 8 m, 2 % outliers
    return Noise(10.0, fixed_accuracy(15.0), fixed_sigma_m=8.0, drift_m=2.0, gap_every_s=0)


def _edge(scene: Scene, rng: random.Random, hours: float = 10.0) -> Track:
    place = rng.choice(_buildings(scene, 15.0))
    pt = point_inside(place, rng, 0.0, 3.0)
    route = stationary(pt.x, pt.y, hours * 3600, True, rng)
    return sample(route, "window or doorway", edge_noise(), rng)


def _kerb(scene: Scene, rng: random.Random) -> Track:
    if isinstance(scene, osm.MapScene):
        node, _ = osm.wall_spot(scene, rng, 3.0, 6.0)
        route = stationary(*scene.walk.at[node], 1800, False, rng)
        return sample(route, "waiting on the pavement", WALK_NOISE, rng)
    place = rng.choice(_buildings(scene, 15.0))
    minx, miny, maxx, maxy = place.poly.bounds
    south = any(
        abs(miny - b.y0) < 1e-6 for col in scene.blocks for b in col if place in b.buildings
    )
    y = miny - rng.uniform(3.0, 6.0) if south else maxy + rng.uniform(3.0, 6.0)
    route = stationary(rng.uniform(minx + 2, maxx - 2), y, 1800, False, rng)
    return sample(route, "waiting on the pavement", WALK_NOISE, rng)


def _covered(scene: Scene, rng: random.Random) -> Track:
    """Walking along a terrace, then waiting 10-30 minutes on the pavement 2-6 m from a
    building under an arcade or a deep awning, where the phone's accuracy figures get as poor
    as indoors, then walking on: the case where "accuracy got worse" does not mean "went in"."""
    if isinstance(scene, osm.MapScene):
        return sample(osm.covered_route(scene, rng), "waiting under cover", WALK_NOISE, rng)
    place = rng.choice(_buildings(scene, 15.0))
    minx, miny, maxx, maxy = place.poly.bounds
    south = any(
        abs(miny - b.y0) < 1e-6 for col in scene.blocks for b in col if place in b.buildings
    )
    y = miny - rng.uniform(2.0, 6.0) if south else maxy + rng.uniform(2.0, 6.0)
    x = rng.uniform(minx + 2, maxx - 2)
    way = rng.choice([1.0, -1.0])
    route = Route(x - way * rng.uniform(120.0, 200.0), y, rng)
    route.street(2.5)
    route.go(x, y, 1.4)
    route.stay(rng.uniform(600.0, 1800.0), covered=True)
    route.go(x + way * rng.uniform(120.0, 200.0), y, 1.4)
    return sample(route, "waiting under cover", WALK_NOISE, rng)


def _indoor_poor(scene: Scene, rng: random.Random) -> Track:
    place = rng.choice(_buildings(scene, 20.0, courtyards=False))
    pt = point_inside(place, rng, 5.0, 40.0)
    route = stationary(pt.x, pt.y, 3600, True, rng)
    noise = Noise(15.0, lognormal_accuracy(45.0, 45.0, 30.0, 65.0))
    return sample(route, "indoors, poor accuracy", noise, rng)


def _glitchy_cycle(scene: Scene, rng: random.Random) -> Track:
    """Cycling with a far-off fix now and then (a 400-700 m hop within 10 s, then back)."""
    track = _cycle(scene, rng)
    fixes = list(track.fixes)
    for i in range(5, len(fixes), 25):
        f = fixes[i]
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(400, 700)
        fixes[i] = dataclasses.replace(
            f, x=f.x + r * math.cos(angle), y=f.y + r * math.sin(angle), outlier=True
        )
    track.fixes = fixes
    track.mode = "cycle with far hops"
    return track


SCENARIOS = [
    Scenario("walk", _walk),
    Scenario("cycle", _cycle),
    Scenario("bus", _bus),
    Scenario("car through a park", _car_park),
    Scenario("desk inside", _desk, stationary=True),
    Scenario("window or doorway", _edge, stationary=True),
    Scenario("waiting on the pavement", _kerb, stationary=True),
    Scenario("indoors, poor accuracy", _indoor_poor, stationary=True),
    Scenario("waiting under cover", _covered, stationary=True),
    Scenario("cycle with far hops", _glitchy_cycle),
]


@dataclass(frozen=True)
class Plan:
    """How many tracks of each mode, on how many scenes, sent in what batch sizes."""

    scenes: int
    tracks: dict[str, int]
    batches: tuple[int, ...] = (1, 10)
    map: str = ""  # a real map (bench/quality/data/<map>.json) instead of generated towns


FULL = Plan(
    scenes=4,
    tracks={
        "walk": 30,
        "cycle": 12,
        "bus": 12,
        "car through a park": 12,
        "desk inside": 8,
        "window or doorway": 2,
        "waiting on the pavement": 12,
        "indoors, poor accuracy": 6,
        "waiting under cover": 12,
        "cycle with far hops": 8,
    },
)
FAST = Plan(
    scenes=2,
    tracks={
        "walk": 8,
        "cycle": 3,
        "bus": 3,
        "car through a park": 4,
        "desk inside": 2,
        "window or doorway": 1,
        "waiting on the pavement": 4,
        "indoors, poor accuracy": 2,
        "waiting under cover": 4,
        "cycle with far hops": 2,
    },
    batches=(1, 10),
)


def tracks_for(plan: Plan, seed: int) -> list[tuple[Scene, Track]]:
    out = []
    for k in range(plan.scenes):
        scene = osm.load_map(plan.map) if plan.map else make_scene(seed * 1000 + k)
        for sc in SCENARIOS:
            n = plan.tracks.get(sc.mode, 0)
            per_scene = n // plan.scenes + (1 if k < n % plan.scenes else 0)
            for i in range(per_scene):
                out.append((scene, _make_track(sc, scene, seed, k, i)))
    return out


def one_track(seed: int, scene: int, mode: str, i: int) -> tuple[Scene, Track]:
    """The `i`-th track of `mode` on a seed's `scene`-th town, as `tracks_for` makes it."""
    town = make_scene(seed * 1000 + scene)
    sc = next(s for s in SCENARIOS if s.mode == mode)
    return town, _make_track(sc, town, seed, scene, i)


def _make_track(sc: Scenario, scene: Scene, seed: int, k: int, i: int) -> Track:
    return sc.make(scene, random.Random(f"{seed}/{k}/{sc.mode}/{i}"))


# --- ground truth -------------------------------------------------------------------------------


@dataclass
class Visit:
    place: Place
    t0: float
    t1: float
    fixes: list[int] = field(default_factory=list)  # fixes reported during it
    # of those, truly >= 10 m inside and reported near there (an outlier, 3-6 sigma or a
    # 400-700 m hop away, is not a fix of this visit: it says the person was elsewhere)
    deep_fixes: int = 0

    @property
    def duration_s(self) -> float:
        return self.t1 - self.t0


def true_visits(scene: Scene, track: Track) -> list[Visit]:
    """Maximal stays inside each place, from the noiseless trajectory sampled every second."""
    open_: dict[uuid.UUID, float] = {}
    visits: list[Visit] = []
    t = track.legs[0].t0
    end = track.legs[-1].t1
    # the seconds sampled, and where the person was at each (one query for all of them)
    times: list[float] = []
    where: list[tuple[float, float]] = []
    while t <= end:
        leg = track.leg_at(t)
        times.append(t)
        where.append(leg.at(t))
        # a stationary leg cannot change anything: jump to its end
        if leg.x0 == leg.x1 and leg.y0 == leg.y1 and t < leg.t1 - 1:
            t = math.floor(leg.t1)
        else:
            t += 1.0
    # and a last second past the end, where nobody is anywhere
    samples = [*zip(times, scene.containing_many(where), strict=True), (t, [])]
    last_inside: set[uuid.UUID] = set()
    for t, places in samples:
        inside = {p.id for p in places}
        for gid in inside - last_inside:
            open_[gid] = t
        for gid in last_inside - inside:
            visits.append(Visit(scene.place(gid), open_.pop(gid), t - 1))
        last_inside = inside
    visits = _merge_unless_left(visits, track)
    for v in visits:
        for i, f in enumerate(track.fixes):
            if v.t0 <= f.t <= v.t1:
                v.fixes.append(i)
                if -v.place.signed(f.true_x, f.true_y) >= 10.0 and not f.outlier:
                    v.deep_fixes += 1
    return visits


def _merge_unless_left(visits: list[Visit], track: Track) -> list[Visit]:
    """One visit until the person truly goes LEFT_M away: stepping out onto the pavement next to
    the place, or crossing its corner, is part of the same visit (the exit rules' reference)."""
    visits.sort(key=lambda v: (str(v.place.id), v.t0))
    out: list[Visit] = []
    for v in visits:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.place is v.place
            and not _went_beyond(v.place, track, prev.t1, v.t0, LEFT_M)
        ):
            prev.t1 = v.t1
            continue
        out.append(v)
    out.sort(key=lambda v: v.t0)
    return out


def _went_beyond(place: Place, track: Track, t0: float, t1: float, metres: float) -> bool:
    t = t0
    while t <= t1:
        x, y = track.at(t)
        if place.signed(x, y) >= metres:
            return True
        t += 1.0
    return False


def _true_distance(place: Place, track: Track, i: int) -> float:
    f = track.fixes[i]
    return place.signed(f.true_x, f.true_y)


def _came_within(place: Place, track: Track, t0: float, t1: float, metres: float) -> bool:
    t = t0
    while t <= t1:
        x, y = track.at(t)
        if place.signed(x, y) <= metres:
            return True
        t += 1.0
    return False


# --- metrics ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts for one (engine, mode); `report` turns them into the published metrics."""

    hours: float = 0.0
    fixes: int = 0
    enters: int = 0
    enters_right: int = 0
    enters_right_acc20: int = 0
    enters_acc20: int = 0
    deep_visits: int = 0
    deep_found: int = 0
    long_visits: int = 0  # >= 2 minutes, buildings >= 10 m wide
    long_found: int = 0
    continued: int = 0  # visits found still inside from an earlier enter
    exits_measured: int = 0
    exits_within_2: int = 0
    exit_lag_fixes: list[int] = field(default_factory=list)
    exit_lag_s: list[float] = field(default_factory=list)
    false_exits: int = 0
    false_enters: int = 0
    dwell_visits: int = 0
    dwell_exactly_one: int = 0
    dwell_extra: int = 0
    dwells_outside_visits: int = 0
    nearby: int = 0
    nearby_right: int = 0
    pass_through: int = 0
    pass_through_right: int = 0
    pass_through_too_fast: int = 0
    # visits of 2 minutes or more to a place that began while the engine held another place,
    # one the person was truly out of by more than TOLERANCE_M all along (they walked into the
    # place next door): how many, how many let go of it while still there, and how long the
    # place left was held into the visit
    next_door: int = 0
    next_door_released: int = 0
    next_door_held_s: list[float] = field(default_factory=list)
    stationary: bool = False

    def add(self, other: Tally) -> None:
        for k, v in vars(other).items():
            if isinstance(v, bool):
                continue
            if isinstance(v, list):
                getattr(self, k).extend(v)
            else:
                setattr(self, k, getattr(self, k) + v)


def judge(scene: Scene, track: Track, events: list[Event], stationary_mode: bool) -> Tally:
    tally = Tally(stationary=stationary_mode)
    tally.hours = track.duration_s / 3600
    tally.fixes = len(track.fixes)
    visits = true_visits(scene, track)
    by_place: dict[uuid.UUID, list[Event]] = defaultdict(list)
    for e in events:
        by_place[e.place].append(e)

    for e in events:
        place = scene.place(e.place)
        d = _true_distance(place, track, e.fix)
        if e.type == "enter":
            tally.enters += 1
            right = d <= TOLERANCE_M
            tally.enters_right += right
            if track.fixes[e.fix].accuracy_m <= 20:
                tally.enters_acc20 += 1
                tally.enters_right_acc20 += right
            if not right:
                tally.false_enters += 1
        elif e.type == "exit":
            if d <= TOLERANCE_M:
                tally.false_exits += 1
        elif e.type == "nearby":
            tally.nearby += 1
            tally.nearby_right += d <= place.trigger_distance_m + TOLERANCE_M
        elif e.type == "passed_through":
            tally.pass_through += 1
            prev = e.from_t
            t0 = prev if prev is not None else e.t - 120
            tally.pass_through_right += _came_within(place, track, t0, e.t, TOLERANCE_M)
            if prev is not None:
                a = track.fixes[e.fix]
                j = _fix_at(track, prev)
                if j is not None:
                    b = track.fixes[j]
                    speed = math.hypot(a.x - b.x, a.y - b.y) / max(1e-9, a.t - b.t)
                    tally.pass_through_too_fast += speed > PLAUSIBLE_CROSSING_MPS
        elif e.type == "dwell" and not any(
            v.place.id == e.place and v.t0 - 30 <= e.t <= v.t1 + 120 for v in visits
        ):
            tally.dwells_outside_visits += 1

    _judge_next_door(scene, track, visits, by_place, tally)
    used: set[tuple[uuid.UUID, int]] = set()
    for v in visits:
        evs = by_place.get(v.place.id, [])
        enter = next(
            (
                e
                for e in evs
                if e.type == "enter" and v.t0 - 30 <= e.t <= v.t1 and (e.place, e.fix) not in used
            ),
            None,
        )
        if enter is not None:
            used.add((enter.place, enter.fix))
        else:
            # still inside from before (a return after too short a time away to exit): found
            before = [e for e in evs if e.type in ("enter", "exit") and e.t < v.t0]
            if before and before[-1].type == "enter":
                enter = before[-1]
                tally.continued += 1
        if len(v.fixes) >= 2 and v.deep_fixes >= 2:
            tally.deep_visits += 1
            tally.deep_found += enter is not None
        if v.duration_s >= 120 and v.place.kind != "park" and v.place.width_m >= 10:
            tally.long_visits += 1
            tally.long_found += enter is not None
        if enter is None:
            continue
        # exit latency: from the first fix truly 30 m out after the visit
        # (a departure counts once the person stays away for two fixes: one fix away and back
        # in is not a departure the engine can be asked to see)
        first30 = next(
            (
                i
                for i, f in enumerate(track.fixes[:-1])
                if f.t > v.t1
                and v.place.signed(f.true_x, f.true_y) >= LEFT_M
                and v.place.signed(track.fixes[i + 1].true_x, track.fixes[i + 1].true_y) >= LEFT_M
            ),
            None,
        )
        if first30 is not None:
            exit_ev = next((e for e in evs if e.type == "exit" and e.t > enter.t), None)
            # only if the person did not come back in before that
            back = any(
                w is not v and w.place is v.place and v.t1 < w.t0 < track.fixes[first30].t
                for w in visits
            )
            if not back:
                tally.exits_measured += 1
                if exit_ev is not None and exit_ev.fix >= first30:
                    lag = exit_ev.fix - first30
                    tally.exit_lag_fixes.append(lag)
                    tally.exit_lag_s.append(exit_ev.t - track.fixes[first30].t)
                    tally.exits_within_2 += lag <= 1
                elif exit_ev is not None:
                    tally.exits_within_2 += 1  # left early (before 30 m), not late
                    tally.exit_lag_fixes.append(0)
                    tally.exit_lag_s.append(0.0)
        # dwell: visits long enough for the dwell time (and a fix or two after it) get one
        if v.duration_s >= v.place.dwell_s + 60:
            tally.dwell_visits += 1
            n = sum(1 for e in evs if e.type == "dwell" and v.t0 - 30 <= e.t <= v.t1 + 120)
            tally.dwell_exactly_one += n == 1
            tally.dwell_extra += max(0, n - 1)
    return tally


def _judge_next_door(
    scene: Scene,
    track: Track,
    visits: list[Visit],
    by_place: dict[uuid.UUID, list[Event]],
    tally: Tally,
) -> None:
    """Places held while the person sits in another one (the `next_door` counts)."""
    for v in visits:
        if v.duration_s < 120 or v.place.kind == "park":
            continue
        at = v.t0
        for gid, evs in by_place.items():
            if gid == v.place.id:
                continue
            place = scene.place(gid)
            if place.kind == "park":
                continue
            states = [e for e in evs if e.type in ("enter", "exit") and e.t <= at]
            if not states or states[-1].type != "enter":
                continue
            t = v.t0
            out_all_along = True
            while t <= v.t1:
                if place.signed(*track.at(t)) < TOLERANCE_M:
                    out_all_along = False
                    break
                t += 5.0
            if not out_all_along:
                continue
            tally.next_door += 1
            exit_ev = next((e for e in evs if e.type == "exit" and e.t > at), None)
            released = exit_ev is not None and exit_ev.t <= v.t1
            tally.next_door_released += released
            tally.next_door_held_s.append(
                (exit_ev.t if released and exit_ev is not None else v.t1) - v.t0
            )


def _fix_at(track: Track, t: float) -> int | None:
    for i, f in enumerate(track.fixes):
        if abs(f.t - t) < 1e-3:
            return i
    return None


def evaluate_plan(plan: Plan, seed: int, runners: Iterable[Any]) -> dict[str, dict[str, Tally]]:
    """{engine name: {mode: tally}} over every track of the plan, each batch size."""
    runners = list(runners)
    results: dict[str, dict[str, Tally]] = {r.name: {} for r in runners}
    stationary_modes = {s.mode for s in SCENARIOS if s.stationary}
    for scene, track in tracks_for(plan, seed):
        for runner in runners:
            for batch in plan.batches:
                events = runner.run(scene, track, batch)
                tally = judge(scene, track, events, track.mode in stationary_modes)
                tally.hours /= len(plan.batches)  # each batch size is a replay of the same hours
                mine = results[runner.name].setdefault(
                    track.mode, Tally(stationary=track.mode in stationary_modes)
                )
                mine.add(tally)
    return results


def _pct(num: float, den: float) -> float | None:
    return None if den == 0 else round(100.0 * num / den, 1)


def metrics(t: Tally) -> dict[str, Any]:
    lag = t.exit_lag_fixes
    return {
        "hours": round(t.hours, 2),
        "enters": t.enters,
        "enter_precision_pct": _pct(t.enters_right, t.enters),
        "enter_precision_acc20_pct": _pct(t.enters_right_acc20, t.enters_acc20),
        "deep_visits": t.deep_visits,
        "deep_recall_pct": _pct(t.deep_found, t.deep_visits),
        "long_visits": t.long_visits,
        "long_recall_pct": _pct(t.long_found, t.long_visits),
        "visits_continued": t.continued,
        "exits_measured": t.exits_measured,
        "exit_within_2_fixes_pct": _pct(t.exits_within_2, t.exits_measured),
        "exit_lag_fixes_max": max(lag) if lag else None,
        "exit_lag_s_median": round(statistics.median(t.exit_lag_s), 1) if t.exit_lag_s else None,
        "false_exits": t.false_exits,
        "false_enters": t.false_enters,
        "flaps_per_hour": round((t.false_exits + t.false_enters) / t.hours, 3)
        if t.stationary and t.hours
        else None,
        "dwell_visits": t.dwell_visits,
        "dwell_exactly_one_pct": _pct(t.dwell_exactly_one, t.dwell_visits),
        "dwell_extra": t.dwell_extra,
        "dwells_outside_visits": t.dwells_outside_visits,
        "next_door": t.next_door,
        "next_door_released_pct": _pct(t.next_door_released, t.next_door),
        "next_door_held_s_median": round(statistics.median(t.next_door_held_s), 1)
        if t.next_door_held_s
        else None,
        "nearby": t.nearby,
        "nearby_right_pct": _pct(t.nearby_right, t.nearby),
        "pass_through": t.pass_through,
        "pass_through_precision_pct": _pct(t.pass_through_right, t.pass_through),
        "pass_through_too_fast": t.pass_through_too_fast,
    }


def totals(per_mode: dict[str, Tally]) -> Tally:
    out = Tally()
    for t in per_mode.values():
        out.add(t)
    return out
