"""The ping read's distances (migration 0019: a local plane per cell of fixes) against the sphere.

Every candidate's signed distance (metres outside, minus the depth inside) is compared with
PostGIS's geography distance on the same sphere, which is what it stands in for: within 3 cm up
to 500 m from the place, 0.03 % further out. Next to the antimeridian the read must fall back to
the sphere (a plane there puts the two sides 40,000 km apart).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.geofences.models import Geofence
from app.presence import repository
from tests.factories import create_resident
from tests.presence.helpers import at, create_circle, create_rectangle

EXACT = text(
    """
    SELECT CASE WHEN d > 0 THEN d
                ELSE -ST_Distance(ST_Boundary(geom)::geography, p::geography, false) END
    FROM (SELECT g.geom, p, ST_Distance(g.geog, p::geography, false) AS d
          FROM geofences g, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS p
          WHERE g.id = :g) x
    """
)


async def _read(
    db: AsyncSession, org: Organisation, points: list[tuple[float, float]], margin: float
) -> repository.BatchView:
    resident = await create_resident(db, org)
    key = repository.SubjectKey(resident.id, "device", org.id)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    fixes = repository.FixColumns(
        idx=list(range(len(points))),
        lon=[p[0] for p in points],
        lat=[p[1] for p in points],
        margin=[margin] * len(points),
        at=[t0 + timedelta(seconds=10 * i) for i in range(len(points))],
    )
    (view,) = await repository.read_batches(db, [repository.BatchRead(key, [], fixes)], 120.0)
    return view


async def _polygon(
    db: AsyncSession, org: Organisation, ring: list[tuple[float, float]]
) -> uuid.UUID:
    wkt = ", ".join(f"{lon} {lat}" for lon, lat in [*ring, ring[0]])
    g = Geofence(
        organisation_id=org.id,
        name="Edge of the map",
        category="park",
        shape_kind="polygon",
        geom=func.ST_GeomFromText(f"POLYGON(({wkt}))", 4326),
        trigger_distance_m=50.0,
        dwell_s=300,
    )
    db.add(g)
    await db.flush()
    return g.id


async def test_candidate_distances_are_the_spheres_within_centimetres(
    db: AsyncSession, org: Organisation
) -> None:
    places = [
        await create_circle(db, org.id, 0, 0, 40),
        await create_circle(db, org.id, 350, -120, 150, trigger_distance_m=100),
        await create_rectangle(db, org.id, -900, 300, -300, 700),  # a park, 600 m x 400 m
        await create_circle(db, org.id, 1500, 1500, 15, trigger_distance_m=25),
    ]
    # a ring of fixes around each place, from deep inside to ~550 m out, in several cells
    points = []
    for cx, cy in [(0, 0), (350, -120), (-600, 500), (1500, 1500)]:
        for r in (0, 5, 30, 60, 140, 260, 400, 550):
            for k in range(6):
                a = 2 * math.pi * k / 6 + r / 100
                points.append(at(cx + r * math.cos(a), cy + r * math.sin(a)))
    view = await _read(db, org, points, margin=600.0)

    compared = 0
    inside = 0
    for idx, cands in view.candidates.items():
        lon, lat = points[idx]
        for c in cands:
            assert c.geofence_id in places
            exact = await db.scalar(EXACT, {"lon": lon, "lat": lat, "g": c.geofence_id})
            assert exact is not None
            tolerance = 0.03 if abs(exact) <= 500 else 3e-4 * abs(exact)
            assert abs(c.signed_m - exact) <= tolerance, (idx, c, exact)
            compared += 1
            inside += c.signed_m < 0
    # the comparison really ran, inside places and outside
    assert compared > 300
    assert inside > 20


async def test_next_to_the_antimeridian_distances_stay_on_the_sphere(
    db: AsyncSession, org: Organisation
) -> None:
    # a small square just west of 180 degrees; the fix 11 m east of it, across the antimeridian
    square = await _polygon(
        db, org, [(179.9995, -0.0002), (179.9999, -0.0002), (179.9999, 0.0002), (179.9995, 0.0002)]
    )
    fix = (-179.9999, 0.0)
    view = await _read(db, org, [fix], margin=25.0)
    (cand,) = view.candidates[0]
    exact = await db.scalar(EXACT, {"lon": fix[0], "lat": fix[1], "g": square})
    assert cand.geofence_id == square
    assert 20 < cand.signed_m < 25  # 0.0002 degrees at the equator: 22 m, not 40,000 km
    assert abs(cand.signed_m - exact) < 1e-6
