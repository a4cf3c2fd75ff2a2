"""Presence quality against ground truth (bench/quality): the fast, deterministic subset.

The generated town centres, movement modes and GPS noise are `bench/quality`'s; every event is
judged against where the person truly was. `make bench` runs the full set and writes the report
(docs/presence.md has the table); here the targets are asserted on a smaller set of tracks, and
one track is sent through the real API to prove the harness measures the production path.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from shapely.geometry import Polygon
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.geofences.models import Geofence
from app.presence import engine
from bench.quality import harness
from bench.quality.scenes import Scene, to_lonlat
from bench.quality.tracks import Track
from tests.factories import Resident
from tests.presence.helpers import T0, send


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, harness.Tally]]:
    return harness.evaluate_plan(harness.FAST, 1, [harness.current_runner()])


def _m(results: dict[str, dict[str, harness.Tally]], mode: str) -> dict[str, Any]:
    return harness.metrics(results["new engine"][mode])


def test_walking_past_buildings_enters_only_where_people_are(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    walk = _m(results, "walk")
    assert walk["enters"] >= 20  # the walks do go into buildings and parks
    assert walk["enter_precision_acc20_pct"] >= 97.0
    moving = harness.Tally()
    for mode in ("walk", "cycle", "bus", "car through a park", "cycle with far hops"):
        moving.add(results["new engine"][mode])
    assert harness.metrics(moving)["enter_precision_pct"] >= 97.0


def test_the_previous_rules_fail_the_same_walks() -> None:
    # the harness can tell: on the same walks, "one fix inside enters" was wrong most times
    plan = dataclasses.replace(harness.FAST, tracks={"walk": 4}, batches=(10,))
    legacy = harness.evaluate_plan(plan, 1, [harness.legacy_runner()])
    assert harness.metrics(legacy["previous rules"]["walk"])["enter_precision_pct"] < 60.0


def test_deep_visits_are_found_and_most_long_ones(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    walk = _m(results, "walk")
    assert walk["deep_visits"] >= 10
    assert walk["deep_recall_pct"] == 100.0
    total = harness.metrics(harness.totals(results["new engine"]))
    assert total["deep_visits"] >= 40
    assert total["deep_recall_pct"] == 100.0
    # 2-minute visits to buildings 10 m wide and more: the target is 90 %, met pooled over five
    # towns (the next test) and on four of them alone (85-98 % on the full sets; seed 1, this
    # subset's town, 85.7 % here). Missed on it: visits a few metres inside at indoor accuracy
    # ~16 m whose fixes average out on the pavement or next door, and visits with a gap of
    # fixes; see docs/presence.md, "What is not met yet"
    assert walk["long_visits"] >= 20
    assert walk["long_recall_pct"] >= 85.0


def test_two_minute_visits_pooled_over_five_towns_reach_the_target() -> None:
    """The 90 % target as the report judges it (bench/quality pools seeds 1-5: one town's
    visits carry +-4-5 points of sampling error): the fast set's walks on five towns, once
    each (batches of ten), every deep visit found and at least 90 % of the 2-minute ones, with
    walking precision still at its target."""
    plan = dataclasses.replace(harness.FAST, tracks={"walk": 8}, batches=(10,))
    pooled = harness.Tally()
    for seed in (1, 2, 3, 4, 5):
        pooled.add(
            harness.evaluate_plan(plan, seed, [harness.current_runner()])["new engine"]["walk"]
        )
    m = harness.metrics(pooled)
    assert m["long_visits"] >= 60
    assert m["long_recall_pct"] >= 90.0, m  # measured: 62 of 68, 91.2 %
    assert m["deep_visits"] >= 40
    assert m["deep_recall_pct"] == 100.0
    assert m["enter_precision_acc20_pct"] >= 97.0


def test_accuracy_that_turns_indoor_on_the_pavement_enters_nobody(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    # people waiting 10-30 minutes 2-6 m from a building under an arcade or awning, where
    # their phone's accuracy gets as poor as indoors: the case where the indoor rule could
    # mislead (on the full sets: 0-1 of 12 waits per town entered); the pavement without
    # cover as well
    for mode in ("waiting under cover", "waiting on the pavement"):
        tally = results["new engine"][mode]
        assert tally.hours >= 1.5, mode
        assert (tally.false_enters, tally.false_exits) == (0, 0), mode


def test_a_phone_at_the_edge_for_ten_hours_never_flaps(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    edge = results["new engine"]["window or doorway"]
    assert edge.hours >= 10.0
    assert (edge.false_exits, edge.false_enters) == (0, 0)
    desk = results["new engine"]["desk inside"]
    assert (desk.false_exits, desk.false_enters) == (0, 0)


def test_exactly_one_dwell_per_visit_and_exits_within_two_fixes(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    m = harness.metrics(harness.totals(results["new engine"]))
    assert m["dwell_visits"] >= 10
    assert m["dwell_exactly_one_pct"] == 100.0
    assert m["exits_measured"] >= 20
    assert m["exit_within_2_fixes_pct"] == 100.0


def test_no_pass_through_at_an_implausible_speed(
    results: dict[str, dict[str, harness.Tally]],
) -> None:
    for mode, tally in results["new engine"].items():
        assert tally.pass_through_too_fast == 0, mode
    hops = _m(results, "cycle with far hops")
    assert hops["false_enters"] == 0
    car = _m(results, "car through a park")
    assert car["pass_through_precision_pct"] in (None, 100.0)


# walks (seed, town, track) in which someone sits in a building, walks into the one next door
# and sits there: the rules without the next-door exit held the first until they left both
NEXT_DOOR = [(2, 0, 6), (3, 0, 6), (4, 0, 0)]


def test_someone_who_walks_into_the_building_next_door_lets_go_of_the_first() -> None:
    without = harness.current_runner(
        engine.Params(stay_next_door_evidence=0.0, stay_move_sigmas=0.0)
    )
    with_rule = harness.current_runner()
    for seed, town, i in NEXT_DOOR:
        scene, track = harness.one_track(seed, town, "walk", i)
        for size in (1, 10):
            now = harness.judge(scene, track, with_rule.run(scene, track, size), False)
            assert (now.next_door, now.next_door_released) == (1, 1), (seed, town, i, size)
            # let go within a few minutes of sitting down there (measured: 1.6-7 minutes)
            assert now.next_door_held_s[0] < 480, (seed, town, i, size)
            before = harness.judge(scene, track, without.run(scene, track, size), False)
            assert (before.next_door, before.next_door_released) == (1, 0), (seed, town, i, size)


def test_batches_and_single_pings_give_the_same_events() -> None:
    runner = harness.current_runner()
    for scene, track in harness.tracks_for(harness.FAST, 1)[:12]:
        one = [(e.type, e.place, e.fix) for e in runner.run(scene, track, 1)]
        assert one, track.mode
        for size in (7, 50):
            assert [(e.type, e.place, e.fix) for e in runner.run(scene, track, size)] == one


async def _places(db: AsyncSession, org: Organisation, scene: Scene) -> None:
    for place in scene.places:
        poly = place.poly
        shell = [to_lonlat(x, y) for x, y in poly.exterior.coords]
        holes = [[to_lonlat(x, y) for x, y in ring.coords] for ring in poly.interiors]
        wkt = Polygon(shell, holes).wkt
        db.add(
            Geofence(
                id=place.id,
                organisation_id=org.id,
                name=f"{place.kind} {str(place.id)[:8]}",
                category="park" if place.kind == "park" else "library",
                shape_kind="polygon",
                geom=func.ST_GeomFromText(wkt, 4326),
                trigger_distance_m=place.trigger_distance_m,
                dwell_s=place.dwell_s,
            )
        )
    await db.flush()


def _pings(track: Track, start: int, end: int) -> list[dict[str, Any]]:
    out = []
    for i, f in enumerate(track.fixes[start:end], start=start):
        lon, lat = to_lonlat(f.x, f.y)
        out.append(
            {
                "id": f"{i:07d}",
                "lon": lon,
                "lat": lat,
                "accuracy_m": f.accuracy_m,
                "speed_mps": f.speed_mps,
                "recorded_at": (T0 + timedelta(seconds=f.t)).isoformat(),
            }
        )
    return out


async def test_the_real_api_gives_the_harness_events(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    # a walk with visits, sent in requests of 10 fixes, against the scene's places in PostGIS
    tracks = harness.tracks_for(harness.FAST, 1)
    scene, track = next((s, t) for s, t in tracks if t.mode == "walk")
    fixes = [f for f in track.fixes if f.t < 5400]  # within the ping retention
    track = dataclasses.replace(track, fixes=fixes)
    await _places(db, org, scene)
    expected = harness.current_runner(t0=T0).run(scene, track, 10)
    assert {e.type for e in expected} >= {"enter", "exit", "nearby"}
    got: list[dict[str, Any]] = []
    for start in range(0, len(track.fixes), 10):
        body = await send(client, resident.headers, _pings(track, start, start + 10))
        got += body["events"]
    assert [(e["type"], e["geofence_id"], e["ping_id"]) for e in got] == [
        (e.type, str(e.place), f"{e.fix:07d}") for e in expected
    ]
