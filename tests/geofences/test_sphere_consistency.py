"""Issue 18, finding 6: shapes that the flat (Shapely) and spherical (PostGIS geography) readings
disagree on are refused with a clear 422, and everything stored is valid with the right area.

Before the fix a circle at a pole was stored as an invalid polygon (the Point branch skipped the
validity check), a circle on the antimeridian as a polygon spanning -180…180, and a polar band
with a geodesic area of 0.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests.factories import create_organisation
from tests.geofences.helpers import circle, feature, polygon
from tests.offers.helpers import quick_staff

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "circle at the north pole": (circle(0.0, 90.0, 100), "circle-covers-pole"),
    "circle around the south pole": (circle(45.0, -89.99, 5000), "circle-covers-pole"),
    "circle across the antimeridian": (circle(179.9999, 0.0, 1000), "crosses-antimeridian"),
    "circle across it from the west": (circle(-179.9995, 64.0, 500), "crosses-antimeridian"),
    "polar band": (
        feature(polygon([[[-180, 80], [180, 80], [180, 90], [-180, 90], [-180, 80]]])),
        "touches-pole",
    ),
    "band around the globe": (
        feature(polygon([[[-180, 60], [180, 60], [180, 61], [-180, 61], [-180, 60]]])),
        "crosses-antimeridian",
    ),
    "polygon across the antimeridian": (
        feature(polygon([[[179.9, 0], [-179.9, 0], [-179.9, 0.1], [179.9, 0.1], [179.9, 0]]])),
        "crosses-antimeridian",
    ),
}


@pytest.fixture
async def editor_headers(db: AsyncSession, settings: Settings) -> dict[str, str]:
    org = await create_organisation(db)
    editor = await quick_staff(db, settings, org, Role.editor)
    await db.execute(
        text("UPDATE organisations SET max_geofence_area_km2 = 100000000 WHERE id = :id"),
        {"id": org.id},
    )
    await db.commit()
    return editor.headers


async def _stored(db: AsyncSession) -> int:
    return int((await db.execute(text("SELECT count(*) FROM geofences"))).scalar_one())


@pytest.mark.parametrize("case", list(REFUSED))
async def test_shapes_the_sphere_disagrees_with_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, editor_headers: dict[str, str], case: str
) -> None:
    body, reason = REFUSED[case]
    before = await _stored(db)
    res = await client.post("/v1/geofences", json=body, headers=editor_headers)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    assert reason in res.text
    assert await _stored(db) == before


@pytest.mark.parametrize(
    ("lon", "lat", "radius"),
    [(179.9, 0.0, 1000.0), (-179.95, -16.5, 2000.0), (10.0, 89.0, 10_000.0), (-1.25, 51.75, 50.0)],
)
async def test_circles_near_the_edges_are_stored_valid_with_the_right_area(
    client: httpx.AsyncClient,
    db: AsyncSession,
    editor_headers: dict[str, str],
    lon: float,
    lat: float,
    radius: float,
) -> None:
    res = await client.post("/v1/geofences", json=circle(lon, lat, radius), headers=editor_headers)
    assert res.status_code == 201, res.text
    row = (
        await db.execute(
            text(
                "SELECT ST_IsValid(geom) AS valid, ST_Area(geom::geography) AS area, "
                "ST_XMax(geom) - ST_XMin(geom) AS width FROM geofences WHERE id = :id"
            ),
            {"id": res.json()["id"]},
        )
    ).one()
    assert row.valid
    assert row.width < 180.0  # no planar wrap-around
    # the circle's area within 1 % (measured on the WGS 84 ellipsoid; the circle is drawn on the
    # mean-radius sphere, a ≈ 0.4 % difference near the equator)
    assert abs(row.area - math.pi * radius**2) <= 0.01 * math.pi * radius**2


async def test_a_polygon_touching_the_antimeridian_without_crossing_is_fine(
    client: httpx.AsyncClient, db: AsyncSession, editor_headers: dict[str, str]
) -> None:
    ring = [[179.99, -16.0], [180.0, -16.0], [180.0, -15.99], [179.99, -15.99], [179.99, -16.0]]
    res = await client.post("/v1/geofences", json=feature(polygon([ring])), headers=editor_headers)
    assert res.status_code == 201, res.text
    area = (
        await db.execute(
            text("SELECT ST_Area(geom::geography) FROM geofences WHERE id = :id"),
            {"id": res.json()["id"]},
        )
    ).scalar_one()
    assert 1_100_000 < area < 1_300_000  # ≈ 1.07 km × 1.11 km


async def test_nothing_invalid_is_stored(
    client: httpx.AsyncClient, db: AsyncSession, editor_headers: dict[str, str]
) -> None:
    for body, _ in REFUSED.values():
        await client.post("/v1/geofences", json=body, headers=editor_headers)
    invalid = (
        await db.execute(
            text(
                "SELECT count(*) FROM geofences WHERE NOT ST_IsValid(geom) "
                "OR ST_Area(geom::geography) <= 0 OR ST_XMax(geom) - ST_XMin(geom) >= 180"
            )
        )
    ).scalar_one()
    assert invalid == 0
