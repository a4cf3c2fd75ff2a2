"""resolve(): inside/near, nearest first, with distances checked against independent formulas."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.geofences import service
from tests.factories import Staff, create_organisation, create_staff
from tests.geofences.helpers import HOLE, SQUARE, circle, feature, polygon

# WGS 84, for a local ellipsoidal distance that does not come from PostGIS.
A, F = 6_378_137.0, 1 / 298.257223563
E2 = F * (2 - F)


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(math.sqrt(a))


def ellipsoid_local(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Short distances on the WGS 84 ellipsoid from the radii of curvature (error ≪ 1 mm/km)."""
    phi = math.radians((lat1 + lat2) / 2)
    w = math.sqrt(1 - E2 * math.sin(phi) ** 2)
    m = A * (1 - E2) / w**3  # meridional radius
    n = A / w  # prime vertical radius
    dy = math.radians(lat2 - lat1) * m
    dx = math.radians(lon2 - lon1) * n * math.cos(phi)
    return math.hypot(dx, dy)


async def _editor_with_places(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, *features: dict[str, object]
) -> tuple[Staff, list[str]]:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    ids = []
    for body in features:
        resp = await client.post("/v1/geofences", json=body, headers=editor.headers)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return editor, ids


async def _resolve(
    client: httpx.AsyncClient, headers: dict[str, str], lon: float, lat: float, acc: float = 0
) -> list[dict[str, object]]:
    resp = await client.get(
        "/v1/geofences/resolve", params={"lon": lon, "lat": lat, "accuracy_m": acc}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    places: list[dict[str, object]] = resp.json()["places"]
    return places


async def test_point_inside_polygon_is_inside_at_zero_metres(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, (gid,) = await _editor_with_places(client, db, settings, feature())
    places = await _resolve(client, editor.headers, -2.0115, 53.7435)
    assert [(p["id"], p["inside"], p["distance_m"]) for p in places] == [(gid, True, 0.0)]


async def test_point_exactly_on_an_edge_counts_as_inside(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, (gid,) = await _editor_with_places(client, db, settings, feature(trigger_distance_m=0))
    places = await _resolve(client, editor.headers, -2.011, 53.742)  # on the southern edge
    assert [(p["id"], p["inside"]) for p in places] == [(gid, True)]
    corner = await _resolve(client, editor.headers, -2.012, 53.744)
    assert [p["inside"] for p in corner] == [True]


async def test_point_in_a_hole_is_outside_at_distance_to_the_hole_edge(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, (gid,) = await _editor_with_places(
        client, db, settings, feature(polygon([SQUARE, HOLE]), trigger_distance_m=50)
    )
    lon, lat = -2.011, 53.743  # centre of the hole; nearest hole edges are 0.0005° east/west
    places = await _resolve(client, editor.headers, lon, lat)
    assert len(places) == 1
    assert places[0]["inside"] is False
    distance = float(places[0]["distance_m"])  # type: ignore[arg-type]
    expected = ellipsoid_local(lon, lat, lon + 0.0005, lat)
    assert math.isclose(distance, expected, rel_tol=5e-4), (distance, expected)
    assert math.isclose(distance, haversine(lon, lat, lon + 0.0005, lat), rel_tol=5e-3)
    # With a trigger distance below that, the hole is simply "not here".
    editor2, _ = await _editor_with_places(
        client, db, settings, feature(polygon([SQUARE, HOLE]), trigger_distance_m=10)
    )
    assert await _resolve(client, editor2.headers, lon, lat) == []


async def test_point_in_one_part_of_a_multipolygon_is_inside(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    east = [[round(x + 0.01, 6), y] for x, y in SQUARE]
    multi = {"type": "MultiPolygon", "coordinates": [[SQUARE], [east]]}
    editor, (gid,) = await _editor_with_places(
        client, db, settings, feature(multi, trigger_distance_m=0)
    )
    assert [p["inside"] for p in await _resolve(client, editor.headers, -2.001, 53.743)] == [True]
    # Between the two parts (≈ 330 m from each): nothing.
    assert await _resolve(client, editor.headers, -2.005, 53.743) == []


async def test_distance_outside_polygon_matches_independent_calculation(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, _ = await _editor_with_places(client, db, settings, feature(trigger_distance_m=500))
    for offset in (0.0003, 0.001, 0.004):  # ~20 m, ~66 m, ~264 m east of the east edge
        lon, lat = -2.010 + offset, 53.743
        (place,) = await _resolve(client, editor.headers, lon, lat)
        distance = float(place["distance_m"])  # type: ignore[arg-type]
        assert math.isclose(distance, ellipsoid_local(-2.010, lat, lon, lat), rel_tol=5e-4)
        assert math.isclose(distance, haversine(-2.010, lat, lon, lat), rel_tol=5e-3)
    # Due north of the northern edge: along a meridian.
    (place,) = await _resolve(client, editor.headers, -2.011, 53.746)
    expected = ellipsoid_local(-2.011, 53.744, -2.011, 53.746)
    assert math.isclose(float(place["distance_m"]), expected, rel_tol=5e-4)  # type: ignore[arg-type]


async def test_circle_membership_is_exact_to_the_radius(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, (gid,) = await _editor_with_places(
        client, db, settings, circle(-2.0, 53.75, 100, trigger_distance_m=20)
    )
    metres_per_deg_lat = ellipsoid_local(-2.0, 53.75, -2.0, 53.751) / 0.001
    inside = await _resolve(client, editor.headers, -2.0, round(53.75 + 99 / metres_per_deg_lat, 6))
    assert [p["inside"] for p in inside] == [True]
    lat_out = round(53.75 + 110 / metres_per_deg_lat, 6)
    (near,) = await _resolve(client, editor.headers, -2.0, lat_out)
    assert near["inside"] is False
    expected = ellipsoid_local(-2.0, 53.75, -2.0, lat_out) - 100
    assert math.isclose(float(near["distance_m"]), expected, abs_tol=0.05)  # type: ignore[arg-type]
    lat_far = round(53.75 + 125 / metres_per_deg_lat, 6)
    assert await _resolve(client, editor.headers, -2.0, lat_far) == []


async def test_accuracy_widens_the_trigger_distance_and_results_are_nearest_first(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    east = [[round(x + 0.002, 6), y] for x, y in SQUARE]  # adjoining square to the east
    editor, (west_id, east_id) = await _editor_with_places(
        client,
        db,
        settings,
        feature(name="West", trigger_distance_m=50),
        feature(polygon([east]), name="East", trigger_distance_m=50),
    )
    lon = -2.007  # 0.001° (≈ 66 m) east of East, ≈ 198 m from West
    assert await _resolve(client, editor.headers, lon, 53.743) == []
    places = await _resolve(client, editor.headers, lon, 53.743, acc=20)
    assert [p["id"] for p in places] == [east_id]
    places = await _resolve(client, editor.headers, lon, 53.743, acc=160)
    assert [p["id"] for p in places] == [east_id, west_id]
    assert places[0]["distance_m"] < places[1]["distance_m"]  # type: ignore[operator]


async def test_inactive_deleted_and_other_organisations_places_are_not_resolved(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    editor, (_, deleted_id) = await _editor_with_places(
        client, db, settings, feature(active_from=later), feature(name="Gone")
    )
    await client.delete(f"/v1/geofences/{deleted_id}", headers=editor.headers)
    other, _ = await _editor_with_places(client, db, settings, feature())
    assert await _resolve(client, editor.headers, -2.011, 53.743) == []
    assert len(await _resolve(client, other.headers, -2.011, 53.743)) == 1


async def test_service_resolve_can_include_inactive_places(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    editor, (gid,) = await _editor_with_places(
        client, db, settings, feature(active_from=later.isoformat())
    )
    org_id = editor.organisation_id
    assert await service.resolve(db, org_id, -2.011, 53.743, 0) == []
    found = await service.resolve(db, org_id, -2.011, 53.743, 0, include_inactive=True)
    assert [(str(p.geofence.id), p.inside, p.distance_m) for p in found] == [(gid, True, 0.0)]
    at_later = await service.resolve(db, org_id, -2.011, 53.743, 0, at=later + timedelta(hours=1))
    assert len(at_later) == 1
    assert (await service.get_geofence(db, org_id, found[0].geofence.id)).name == "Central Library"


async def test_resolve_says_whether_each_place_is_open_now(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    never = {"time_zone": "Europe/London", "weekly": {}}
    editor, (closed_id, open_id) = await _editor_with_places(
        client, db, settings, feature(name="Closed", opening_hours=never), feature(name="Open")
    )
    places = await _resolve(client, editor.headers, -2.011, 53.743)
    assert {p["id"]: p["open_now"] for p in places} == {closed_id: False, open_id: True}
