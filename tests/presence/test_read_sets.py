"""The ping read for groups of many subjects (the evaluator's sets; migration 0041).

Judged against what each part stands for, not against the read's own earlier output:
- crossings: every segment's crossed places, their end distances and depth, against the
  per-segment query on the sphere (`repository.resolve_crossings`), for segments both shorter
  than the reach of their cell's index scan (taken from that scan's places) and longer;
- present places: a place a subject is present at is measured for that subject at any
  distance, and for no other subject of the group beyond its reach;
- the lock: an existing subject row is locked, not rewritten.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.presence import repository
from app.presence.engine import Crossing
from tests.factories import create_resident
from tests.presence.helpers import at, create_circle, create_rectangle

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
MARGIN = 37.5  # the window of a fix with 10 m accuracy (1.5 x the 25 m exit margin)
TRIGGER = 30.0  # every place's trigger distance: the read's reach is 30 + 37.5 m


def _fixes(points: list[tuple[float, float]], step_s: float) -> repository.FixColumns:
    return repository.FixColumns(
        idx=list(range(len(points))),
        lon=[p[0] for p in points],
        lat=[p[1] for p in points],
        margin=[MARGIN] * len(points),
        at=[T0 + timedelta(seconds=step_s * i) for i in range(len(points))],
    )


async def test_crossings_of_short_and_long_segments_are_the_spheres(
    db: AsyncSession, org: Organisation
) -> None:
    places = {
        await create_circle(db, org.id, 0, 0, 12, trigger_distance_m=TRIGGER),
        await create_circle(db, org.id, 60, 25, 8, trigger_distance_m=TRIGGER),
        await create_rectangle(
            db, org.id, 300, -40, 420, 40, trigger_distance_m=TRIGGER
        ),  # a park 120 m wide
        await create_circle(db, org.id, 700, 300, 20, trigger_distance_m=TRIGGER),
    }
    # a pond 1 km north, far from every fix but the two of the jump that crosses it
    places.add(await create_circle(db, org.id, 0, 1000, 15, trigger_distance_m=TRIGGER))
    # one subject per track: a walk in 20-40 m steps through the small places (segments
    # shorter than the reach), jumps of 150-450 m across the park and the pond (longer: the
    # pond lies beyond the reach of the jump's end), and a mixture
    tracks_m = [
        [(-60 + 25 * k, -5 + 3 * k) for k in range(8)],
        [(-100, 0), (250, 10), (480, -5), (700, 150), (690, 420)],
        [(-30, 30), (-5, 5), (30, -10), (200, 0), (520, 30), (545, 20), (560, 5)],
        [(0, 780), (5, 1230), (10, 1260)],
    ]
    group = []
    for track in tracks_m:
        resident = await create_resident(db, org)
        key = repository.SubjectKey(resident.id, "device", org.id)
        points = [at(x, y) for x, y in track]
        group.append((key, points, track))
    views = await repository.read_batches(
        db, [repository.BatchRead(k, [], _fixes(p, 10.0)) for k, p, _ in group], 120.0
    )

    short = long = 0
    for (_, points, track), view in zip(group, views, strict=True):
        segments = [
            (i, *points[i - 1], *points[i], T0 + timedelta(seconds=10.0 * i))
            for i in range(1, len(points))
        ]
        expected = await repository.resolve_crossings(db, org.id, segments)
        assert set(view.crossings) == set(expected)
        for idx, crossed in expected.items():
            got = {c.geofence_id: c for c in view.crossings[idx]}
            assert set(got) == {c.geofence_id for c in crossed} <= places
            for want in crossed:
                c: Crossing = got[want.geofence_id]
                assert abs(c.from_distance_m - want.from_distance_m) < 0.05
                assert abs(c.to_distance_m - want.to_distance_m) < 0.05
                assert c.active == want.active
                if c.from_distance_m > 0 and c.to_distance_m > 0:
                    assert abs(c.depth_m - want.depth_m) < 0.05
            length = math.dist(track[idx - 1], track[idx])
            if length < TRIGGER + MARGIN - 5:
                short += 1
            elif length > TRIGGER + MARGIN + 5:
                long += 1
    # both kinds of segment crossed places (the comparison really ran on both paths)
    assert short >= 3
    assert long >= 3


async def test_present_places_are_measured_for_their_own_subject_only(
    db: AsyncSession, org: Organisation
) -> None:
    # a building; each subject's fix lies 60 m east and 60 m north of its north-east corner
    # (85 m away): inside the box the read tests (trigger + margin = 67.5 m each way), beyond
    # trigger + margin
    place = await create_rectangle(db, org.id, 0, 0, 20, 20, trigger_distance_m=TRIGGER)
    far = await create_circle(db, org.id, 2000, 2000, 15, trigger_distance_m=TRIGGER)
    subjects = []
    for _ in range(3):
        resident = await create_resident(db, org)
        subjects.append(repository.SubjectKey(resident.id, "device", org.id))
    # the second subject is inside the building and near the far circle (2.7 km away)
    for gid, state in ((place, "inside"), (far, "nearby")):
        await db.execute(
            text(
                "INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id,"
                " state, since, last_fix_at, dwell_emitted)"
                " VALUES (:s, :g, 'device', :o, :st, :t, :t, false)"
            ),
            {"s": subjects[1].id, "g": gid, "o": org.id, "st": state, "t": T0},
        )
    fix = at(80, 80)
    views = await repository.read_batches(
        db, [repository.BatchRead(k, [], _fixes([fix], 10.0)) for k in subjects], 120.0
    )
    for k, view in enumerate(views):
        cands = {c.geofence_id: c for c in view.candidates.get(0, [])}
        if k == 1:
            assert set(cands) == {place, far}
            assert 83 < cands[place].signed_m < 87  # 84.9 m from the corner
            assert cands[far].signed_m > 2500
            assert set(view.states) == {place, far}
        else:
            assert cands == {}
            assert view.states == {}


async def test_an_existing_subject_row_is_locked_not_rewritten(
    db: AsyncSession, org: Organisation
) -> None:
    resident = await create_resident(db, org)
    key = repository.SubjectKey(resident.id, "device", org.id)
    await db.execute(
        text(
            "INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id)"
            " VALUES (:s, 'device', :o)"
        ),
        {"s": key.id, "o": org.id},
    )
    row = text("SELECT ctid::text, xmax::text FROM presence_subjects WHERE subject_id = :s")
    before = (await db.execute(row, {"s": key.id})).one()
    await repository.read_batches(
        db, [repository.BatchRead(key, [], _fixes([at(0, 0)], 10.0))], 120.0
    )
    after = (await db.execute(row, {"s": key.id})).one()
    assert after.ctid == before.ctid  # no new version of the row (an update would move it)
    # a new subject still gets its row
    other = await create_resident(db, org)
    new_key = repository.SubjectKey(other.id, "device", org.id)
    await repository.read_batches(
        db, [repository.BatchRead(new_key, [], _fixes([at(0, 0)], 10.0))], 120.0
    )
    assert (await db.execute(row, {"s": other.id})).one_or_none() is not None
    assert uuid.UUID(str(other.id)) == other.id
