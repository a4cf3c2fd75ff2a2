"""Presence quality on a real city centre: the centre of Helsinki from OpenStreetMap.

The generated towns (tests/presence/test_quality.py) are regular; here the same movement modes
and GPS noise run on real buildings, parks, sidewalks and roads (bench/quality/osm.py; map data
(c) OpenStreetMap contributors, ODbL), where no rule was tuned before it was measured, and the
events are judged against where the person truly was.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from shapely.geometry import Point

from app.presence import engine
from bench.quality import harness, osm

WALKS = {"walk": 30}
VEHICLES = {"cycle": 12, "bus": 12, "car through a park": 12}


@pytest.fixture(scope="module")
def city() -> osm.MapScene:
    return osm.load_map("helsinki")


def _plan(tracks: dict[str, int]) -> harness.Plan:
    return dataclasses.replace(harness.FULL, map="helsinki", tracks=tracks, batches=(10,))


def _pooled(
    tracks: dict[str, int], seeds: tuple[int, ...], params: engine.Params | None = None
) -> dict[str, harness.Tally]:
    """{mode: tally} of the current engine (or `params`) over the seeds' tracks on the map."""
    out: dict[str, harness.Tally] = {}
    for seed in seeds:
        res = harness.evaluate_plan(_plan(tracks), seed, [harness.current_runner(params)])
        for mode, tally in res["new engine"].items():
            out.setdefault(mode, harness.Tally(stationary=tally.stationary)).add(tally)
    return out


def test_the_map_is_a_city_centre_of_buildings_parks_and_ways(city: osm.MapScene) -> None:
    kinds = [p.kind for p in city.places]
    assert kinds.count("building") >= 300
    assert kinds.count("courtyard") >= 40  # perimeter blocks round a yard
    assert kinds.count("park") >= 8
    assert all(p.poly.is_valid and p.poly.area >= osm.MIN_BUILDING_M2 for p in city.places)
    assert len(city.walk.links) >= 2000
    assert len(city.roads.links) >= 500
    # one network: a walk from the far south-west corner reaches the far north-east one
    nodes = sorted(city.walk.links)
    sw = min(nodes, key=lambda n: city.walk.at[n][0] + city.walk.at[n][1])
    ne = max(nodes, key=lambda n: city.walk.at[n][0] + city.walk.at[n][1])
    way = city.walk.path(sw, ne)
    assert (way[0], way[-1]) == (sw, ne)
    length = sum(
        math.dist(city.walk.at[a], city.walk.at[b]) for a, b in zip(way, way[1:], strict=False)
    )
    assert length > math.dist(city.walk.at[sw], city.walk.at[ne]) > 1000


def test_walks_keep_outdoors_but_for_their_visits(city: osm.MapScene) -> None:
    """The ground truth is real: a walker's legs outdoors never run through a building (the
    ways through passages are left out), and each visit goes in from the nearest wall to a
    point inside that building."""
    visits = 0
    for _, track in harness.tracks_for(_plan({"walk": 6}), 1):
        for leg in track.legs:
            length = math.hypot(leg.x1 - leg.x0, leg.y1 - leg.y0)
            steps = max(1, int(length / 2.0))
            points = [
                (leg.x0 + (leg.x1 - leg.x0) * k / steps, leg.y0 + (leg.y1 - leg.y0) * k / steps)
                for k in range(steps + 1)
            ]
            if leg.indoor:
                visits += leg.x0 == leg.x1 and leg.y0 == leg.y1  # the stay inside
                for x, y in points:  # inside, or on the wall it went in at (to rounding)
                    depth = min(p.signed(x, y) for p in city.near(Point(x, y), 1.0))
                    assert depth < 0.01, "a visit's leg left its building"
                continue
            for x, y in points:
                for place in city.near(Point(x, y), 0.1):
                    if place.kind != "park":
                        assert place.signed(x, y) > -0.6, (x, y, place.id)
    assert visits >= 10


def test_walkers_on_real_streets_are_entered_only_where_they_are() -> None:
    walk = _pooled(WALKS, (1, 2, 3))["walk"]
    m = harness.metrics(walk)
    assert m["enters"] >= 200
    assert m["enter_precision_acc20_pct"] >= 97.0, m  # measured: 252 of 255, 98.8 %
    # the harness can tell on this map too: the previous rules ("one fix inside enters")
    legacy = harness.evaluate_plan(_plan({"walk": 6}), 1, [harness.legacy_runner()])
    assert harness.metrics(legacy["previous rules"]["walk"])["enter_precision_pct"] < 60.0


def test_vehicles_on_curving_roads_pass_through_only_what_they_crossed() -> None:
    """Fixes 10-30 s apart on roads that bend round buildings and parks: the straight line
    between two cuts corners; a crossing is reported only where it runs 20 m deep and deeper
    than half the bow the path the phone reported could have made."""
    res = _pooled(VEHICLES, (1, 2, 3))
    moving = harness.Tally()
    for tally in res.values():
        moving.add(tally)
    assert moving.pass_through_too_fast == 0
    assert moving.pass_through >= 20
    precision = moving.pass_through_right / moving.pass_through
    assert precision >= 0.7, (moving.pass_through_right, moving.pass_through)  # measured 0.84
    assert harness.metrics(moving)["enter_precision_pct"] >= 97.0
    # the rules before (any crossing 10 m deep whose speed agrees within 0.8-1.25): mostly
    # corners cut
    old = dataclasses.replace(
        engine.Params(), pass_through_min_depth_m=10.0, pass_through_bow_share=0.0
    )
    before = harness.Tally()
    for tally in _pooled(VEHICLES, (1,), old).values():
        before.add(tally)
    assert before.pass_through_right / before.pass_through < 0.4


def test_people_waiting_or_sitting_still_on_the_map_do_not_flap_nor_dwell_twice() -> None:
    res = _pooled(
        {
            "window or doorway": 1,
            "desk inside": 4,
            "waiting on the pavement": 12,
            "indoors, poor accuracy": 3,
        },
        (1,),
    )
    edge = res["window or doorway"]
    assert edge.hours >= 10.0
    assert (edge.false_exits, edge.false_enters) == (0, 0)
    desk = res["desk inside"]
    assert (desk.false_exits, desk.false_enters, desk.dwell_extra) == (0, 0, 0)
    # 12 half-hour waits 3-6 m from a wall: judged on the mean of their fixes, not on a run of
    # their noisiest ones (rule `stay_outside_evidence`)
    kerb = res["waiting on the pavement"]
    assert kerb.hours >= 5.5
    assert kerb.false_enters == 0
