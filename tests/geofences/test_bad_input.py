"""Every bad shape is a 422 problem+json naming the reason, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.geofences.models import Geofence
from tests.factories import Staff, create_organisation, create_staff
from tests.geofences.helpers import SQUARE, circle, feature, polygon

BOWTIE = [[-2.012, 53.742], [-2.010, 53.744], [-2.010, 53.742], [-2.012, 53.744], [-2.012, 53.742]]
FAR_HOLE = [[-1.5, 53.0], [-1.4, 53.0], [-1.4, 53.1], [-1.5, 53.1], [-1.5, 53.0]]


def _many_vertices(n: int) -> list[list[float]]:
    import math

    ring = [
        [round(-2.0 + 0.01 * math.cos(2 * math.pi * i / n), 6),
         round(53.7 + 0.01 * math.sin(2 * math.pi * i / n), 6)]
        for i in range(n)
    ]  # fmt: skip
    return [*ring, ring[0]]


BAD_GEOMETRIES: list[tuple[str, dict[str, Any], str]] = [
    ("unclosed ring", polygon([SQUARE[:-1]]), "unclosed-ring"),
    ("three positions", polygon([[SQUARE[0], SQUARE[1], SQUARE[0]]]), "too-few-positions"),
    ("bow-tie", polygon([BOWTIE]), "self-intersection"),
    ("hole outside shell", polygon([SQUARE, FAR_HOLE]), "hole-outside-shell"),
    (
        "longitude 200",
        polygon([[[200, 1], [201, 1], [201, 2], [200, 1]]]),
        "longitude-out-of-range",
    ),
    ("latitude 95", polygon([[[1, 95], [2, 95], [2, 96], [1, 95]]]), "latitude-out-of-range"),
    ("3-D positions", polygon([[[*p, 10.0] for p in SQUARE]]), "extra-dimensions"),
    ("4-D positions", polygon([[[*p, 10.0, 1.0] for p in SQUARE]]), "extra-dimensions"),
    (
        "string coordinate",
        {"type": "Polygon", "coordinates": [[["-2.0", 53.0], *SQUARE[1:]]]},
        "coordinate-not-a-number",
    ),
    ("LineString", {"type": "LineString", "coordinates": SQUARE}, "unsupported-geometry-type"),
    (
        "GeometryCollection",
        {"type": "GeometryCollection", "geometries": [polygon()]},
        "unsupported-geometry-type",
    ),
    (
        "crs member",
        {**polygon(), "crs": {"type": "name", "properties": {"name": "EPSG:27700"}}},
        "crs-not-allowed",
    ),  # fmt: skip
    ("2,001 vertices", polygon([_many_vertices(2000)]), "too-many-vertices"),
    (
        "a whole country",
        polygon([[[-5, 50], [1, 50], [1, 55], [-5, 55], [-5, 50]]]),
        "area-too-large",
    ),  # fmt: skip
    ("point without radius", {"type": "Point", "coordinates": [-2.0, 53.7]}, "radius-required"),
]


@pytest.fixture
async def editor(db: AsyncSession, settings: Settings) -> Staff:
    org = await create_organisation(db)
    return await create_staff(db, settings, org, Role.editor)


async def _count(db: AsyncSession, editor: Staff) -> int:
    stmt = (
        select(func.count())
        .select_from(Geofence)
        .where(Geofence.organisation_id == editor.organisation_id)
    )
    return int(await db.scalar(stmt) or 0)


def _assert_problem(resp: httpx.Response, reason: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["reason"] == reason, resp.json()


@pytest.mark.parametrize(
    ("case", "geometry", "reason"), BAD_GEOMETRIES, ids=[c[0] for c in BAD_GEOMETRIES]
)
async def test_bad_geometry_is_rejected_with_reason_and_not_stored(
    client: httpx.AsyncClient,
    db: AsyncSession,
    editor: Staff,
    case: str,
    geometry: dict[str, Any],
    reason: str,
) -> None:
    resp = await client.post("/v1/geofences", json=feature(geometry), headers=editor.headers)
    _assert_problem(resp, reason)
    assert await _count(db, editor) == 0


@pytest.mark.parametrize(
    ("case", "raw", "reason"),
    [
        ("NaN", "NaN", "coordinate-not-finite"),
        ("Infinity", "Infinity", "coordinate-not-finite"),
        ("-Infinity", "-Infinity", "coordinate-not-finite"),
        ("1e400", "1e400", "coordinate-not-finite"),
        ("huge integer", "1" + "0" * 400, "coordinate-out-of-range"),
    ],
)
async def test_non_finite_coordinates_in_raw_json_are_rejected(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff, case: str, raw: str, reason: str
) -> None:
    body = json.dumps(feature(polygon([[[-2.0, 53.7], [-2.0, 53.8], [-1.9, 53.8], [-2.0, 53.7]]])))
    body = body.replace("-1.9", raw, 1)
    resp = await client.post(
        "/v1/geofences",
        content=body,
        headers={**editor.headers, "content-type": "application/json"},
    )
    _assert_problem(resp, reason)
    assert await _count(db, editor) == 0


async def test_shape_above_the_organisations_own_area_limit_is_rejected(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    from app.accounts.models import Organisation

    org = await db.get(Organisation, editor.organisation_id)
    assert org is not None
    org.max_geofence_area_km2 = 0.01  # the square is ≈ 0.03 km²
    await db.flush()
    resp = await client.post("/v1/geofences", json=feature(), headers=editor.headers)
    _assert_problem(resp, "area-too-large")
    assert await _count(db, editor) == 0


@pytest.mark.parametrize("radius", [0, 0.5, 10_001, -5, 1e9])
async def test_circle_radius_out_of_range_is_rejected(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff, radius: float
) -> None:
    resp = await client.post(
        "/v1/geofences", json=circle(-2.0, 53.7, radius), headers=editor.headers
    )
    _assert_problem(resp, "radius-out-of-range")
    assert await _count(db, editor) == 0


async def test_radius_on_a_polygon_and_null_island_circle_are_rejected(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    resp = await client.post("/v1/geofences", json=feature(radius_m=10), headers=editor.headers)
    _assert_problem(resp, "radius-not-applicable")


async def test_duplicate_external_id_is_rejected_on_create_and_patch(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    first = await client.post(
        "/v1/geofences", json=feature(external_id="A"), headers=editor.headers
    )
    assert first.status_code == 201
    resp = await client.post("/v1/geofences", json=feature(external_id="A"), headers=editor.headers)
    _assert_problem(resp, "duplicate-external-id")
    assert await _count(db, editor) == 1
    second = await client.post(
        "/v1/geofences", json=feature(external_id="B"), headers=editor.headers
    )
    resp = await client.patch(
        f"/v1/geofences/{second.json()['id']}",
        json={"properties": {"external_id": "A"}},
        headers=editor.headers,
    )
    _assert_problem(resp, "duplicate-external-id")


async def test_bad_patch_geometry_leaves_the_place_unchanged(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    created = (await client.post("/v1/geofences", json=feature(), headers=editor.headers)).json()
    resp = await client.patch(
        f"/v1/geofences/{created['id']}",
        json={"geometry": polygon([BOWTIE]), "properties": {"name": "Changed"}},
        headers=editor.headers,
    )
    _assert_problem(resp, "self-intersection")
    after = (await client.get(f"/v1/geofences/{created['id']}", headers=editor.headers)).json()
    assert after["geometry"] == created["geometry"]
    assert after["properties"]["name"] == "Central Library"


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"unknown": 1}, "properties.unknown"),
        ({"category": "Not A Slug"}, "properties.category"),
        ({"trigger_distance_m": float("nan")}, "properties.trigger_distance_m"),
        (
            {"opening_hours": {"time_zone": "Mars/Olympus", "weekly": {}}},
            "properties.opening_hours.time_zone",
        ),  # fmt: skip
        (  # a directory in the zone database, not a zone (IsADirectoryError when opened)
            {"opening_hours": {"time_zone": "Europe", "weekly": {}}},
            "properties.opening_hours.time_zone",
        ),
        (
            {"opening_hours": {"time_zone": "x" * 60, "weekly": {}}},
            "properties.opening_hours.time_zone",
        ),
        (
            {
                "opening_hours": {
                    "time_zone": "Europe/London",
                    "weekly": {"mon": [["25:00", "26:00"]]},
                }
            },
            "properties.opening_hours.weekly",
        ),  # fmt: skip
        ({"active_from": "2026-01-02T00:00:00"}, "properties.active_from"),
        ({"metadata": {"x": float("nan")}}, "properties.metadata"),
        ({"metadata": {"x": "nul\u0000"}}, "request body"),  # NulByteMiddleware, before parsing
        ({"name": "Central\u0000Library"}, "request body"),
    ],
)
async def test_bad_properties_are_rejected_naming_the_field(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff, props: dict[str, Any], field: str
) -> None:
    resp = await client.post(
        "/v1/geofences",
        content=json.dumps(feature(**props)),  # json.dumps writes NaN, as some clients do
        headers={**editor.headers, "content-type": "application/json"},
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert field in resp.json()["detail"], resp.json()
    assert await _count(db, editor) == 0


async def test_unknown_category_is_rejected_unless_configured(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    resp = await client.post(
        "/v1/geofences", json=feature(category="allotment"), headers=editor.headers
    )
    _assert_problem(resp, "unknown-category")
