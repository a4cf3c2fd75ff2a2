from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.geofences.models import Geofence
from tests.factories import create_organisation, create_staff
from tests.geofences.helpers import HOLE, SQUARE, circle, feature, polygon


async def test_editor_creates_polygon_and_reads_it_back_as_feature(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    body = feature(external_id="LIB-1", tags=["books", "wifi"], metadata={"uprn": "100"})
    created = await client.post("/v1/geofences", json=body, headers=editor.headers)
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["type"] == "Feature"
    assert data["geometry"] == {"type": "Polygon", "coordinates": [SQUARE]}
    props = data["properties"]
    assert props["name"] == "Central Library"
    assert props["trigger_distance_m"] == 50.0  # library default
    assert props["tags"] == ["books", "wifi"]
    assert props["metadata"] == {"uprn": "100"}
    assert props["active"] is True
    got = await client.get(f"/v1/geofences/{data['id']}", headers=editor.headers)
    assert got.status_code == 200
    assert got.json() == data


async def test_clockwise_input_is_returned_counter_clockwise_with_clockwise_holes(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    clockwise = list(reversed(SQUARE))
    ccw_hole = list(reversed(HOLE))  # HOLE is clockwise; give it counter-clockwise
    resp = await client.post(
        "/v1/geofences", json=feature(polygon([clockwise, ccw_hole])), headers=editor.headers
    )
    assert resp.status_code == 201, resp.text
    exterior, hole = resp.json()["geometry"]["coordinates"]
    assert _signed_area(exterior) > 0  # counter-clockwise
    assert _signed_area(hole) < 0  # clockwise
    assert sorted(map(tuple, exterior)) == sorted(map(tuple, SQUARE))


async def test_multipolygon_with_hole_and_circle_round_trip(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    other = [[[x + 0.01, y] for x, y in SQUARE]]
    multi = {"type": "MultiPolygon", "coordinates": [[SQUARE, HOLE], other]}
    resp = await client.post("/v1/geofences", json=feature(multi), headers=editor.headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["geometry"]["type"] == "MultiPolygon"
    assert len(resp.json()["geometry"]["coordinates"][0]) == 2

    park = circle(-2.0, 53.75, 120, name="Calder Park", category="park")
    resp = await client.post("/v1/geofences", json=park, headers=editor.headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["geometry"] == {"type": "Point", "coordinates": [-2.0, 53.75]}
    assert resp.json()["properties"]["radius_m"] == 120
    assert resp.json()["properties"]["trigger_distance_m"] == 100.0  # park default


async def test_patch_changes_geometry_and_properties(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    gid = (await client.post("/v1/geofences", json=feature(), headers=editor.headers)).json()["id"]
    moved = [[round(x + 0.1, 6), y] for x, y in SQUARE]
    resp = await client.patch(
        f"/v1/geofences/{gid}",
        json={"geometry": polygon([moved]), "properties": {"name": "New Library", "dwell_s": 60}},
        headers=editor.headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["geometry"]["coordinates"] == [moved]
    assert resp.json()["properties"]["name"] == "New Library"
    assert resp.json()["properties"]["dwell_s"] == 60
    # Turning it into a circle, then changing only the radius.
    resp = await client.patch(
        f"/v1/geofences/{gid}",
        json={"geometry": {"type": "Point", "coordinates": [-2.0, 53.7]},
              "properties": {"radius_m": 40}},
        headers=editor.headers,
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    resp = await client.patch(
        f"/v1/geofences/{gid}", json={"properties": {"radius_m": 80}}, headers=editor.headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["properties"]["radius_m"] == 80
    # Moving the circle keeps its radius.
    resp = await client.patch(
        f"/v1/geofences/{gid}",
        json={"geometry": {"type": "Point", "coordinates": [-2.001, 53.7]}},
        headers=editor.headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["geometry"]["coordinates"] == [-2.001, 53.7]
    assert resp.json()["properties"]["radius_m"] == 80


async def test_delete_is_soft_and_hides_the_place(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    gid = (
        await client.post("/v1/geofences", json=feature(external_id="X"), headers=editor.headers)
    ).json()["id"]
    assert (await client.delete(f"/v1/geofences/{gid}", headers=editor.headers)).status_code == 204
    assert (await client.get(f"/v1/geofences/{gid}", headers=editor.headers)).status_code == 404
    kept = await db.scalar(select(func.count()).where(Geofence.id == gid))
    assert kept == 1
    # The external_id is free again for a new place.
    again = await client.post(
        "/v1/geofences", json=feature(external_id="X"), headers=editor.headers
    )
    assert again.status_code == 201


def _signed_area(ring: list[list[float]]) -> float:
    return (
        sum(
            (ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1])
            for i in range(len(ring) - 1)
        )
        / 2
    )
