"""Admins and editors write; field workers and residents read; other organisations see 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests.factories import Resident, Staff, create_organisation, create_resident, create_staff
from tests.geofences.helpers import feature


@pytest.mark.parametrize("role", [Role.admin, Role.editor])
async def test_admins_and_editors_can_create_update_and_delete(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, role: Role
) -> None:
    org = await create_organisation(db)
    staff = await create_staff(db, settings, org, role)
    resp = await client.post("/v1/geofences", json=feature(), headers=staff.headers)
    assert resp.status_code == 201
    gid = resp.json()["id"]
    patch = {"properties": {"name": "Renamed"}}
    assert (
        await client.patch(f"/v1/geofences/{gid}", json=patch, headers=staff.headers)
    ).status_code == 200
    assert (await client.delete(f"/v1/geofences/{gid}", headers=staff.headers)).status_code == 204


async def test_field_workers_and_residents_read_but_cannot_write(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    worker = await create_staff(db, settings, org, Role.field_worker)
    resident = await create_resident(db, org)
    body = feature(metadata={"keyholder": "07700 900000"}, external_id="LIB-1")
    gid = (await client.post("/v1/geofences", json=body, headers=editor.headers)).json()["id"]
    for caller in (worker, resident):
        assert (
            await client.post("/v1/geofences", json=feature(), headers=caller.headers)
        ).status_code == 403
        assert (
            await client.patch(
                f"/v1/geofences/{gid}", json={"properties": {"name": "x"}}, headers=caller.headers
            )
        ).status_code == 403
        assert (
            await client.delete(f"/v1/geofences/{gid}", headers=caller.headers)
        ).status_code == 403
        imp = {"type": "FeatureCollection", "features": []}
        assert (
            await client.post("/v1/geofences/import", json=imp, headers=caller.headers)
        ).status_code == 403
        assert (await client.get(f"/v1/geofences/{gid}", headers=caller.headers)).status_code == 200
        resolved = await client.get(
            "/v1/geofences/resolve", params={"lon": -2.011, "lat": 53.743}, headers=caller.headers
        )
        assert [p["id"] for p in resolved.json()["places"]] == [gid]
    staff_view = (await client.get(f"/v1/geofences/{gid}", headers=worker.headers)).json()
    assert staff_view["properties"]["metadata"] == {"keyholder": "07700 900000"}
    public = (await client.get(f"/v1/geofences/{gid}", headers=resident.headers)).json()
    assert set(public["properties"]) == {
        "name", "category", "tags", "radius_m", "trigger_distance_m", "dwell_s", "opening_hours",
    }  # fmt: skip
    assert "metadata" not in public["properties"]
    assert (await client.get(f"/v1/geofences/{gid}", headers=editor.headers)).json()["properties"][
        "name"
    ] == "Central Library"


async def test_residents_do_not_see_inactive_places(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    resident = await create_resident(db, org)
    ended = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    gid = (
        await client.post(
            "/v1/geofences",
            json=feature(active_from="2020-01-01T00:00:00Z", active_until=ended),
            headers=editor.headers,
        )
    ).json()["id"]
    assert (await client.get(f"/v1/geofences/{gid}", headers=resident.headers)).status_code == 404
    listed = await client.get("/v1/geofences", params={"active": "false"}, headers=resident.headers)
    assert listed.json()["items"] == []
    staff_list = await client.get(
        "/v1/geofences", params={"active": "false"}, headers=editor.headers
    )
    assert [i["id"] for i in staff_list.json()["items"]] == [gid]


async def test_another_organisations_place_is_404_for_every_caller_and_unchanged(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    home = await create_organisation(db)
    away = await create_organisation(db)
    owner = await create_staff(db, settings, home, Role.editor)
    gid = (await client.post("/v1/geofences", json=feature(), headers=owner.headers)).json()["id"]
    intruders: list[Staff | Resident] = [
        await create_staff(db, settings, away, Role.admin),
        await create_staff(db, settings, away, Role.editor),
        await create_staff(db, settings, away, Role.field_worker),
        await create_resident(db, away),
    ]
    for intruder in intruders:
        assert (
            await client.get(f"/v1/geofences/{gid}", headers=intruder.headers)
        ).status_code == 404
        listed = await client.get("/v1/geofences", headers=intruder.headers)
        assert listed.json()["items"] == []
    for editor in intruders[:2]:
        patch = {"properties": {"name": "Hijacked"}}
        assert (
            await client.patch(f"/v1/geofences/{gid}", json=patch, headers=editor.headers)
        ).status_code == 404
        assert (
            await client.delete(f"/v1/geofences/{gid}", headers=editor.headers)
        ).status_code == 404
    after = (await client.get(f"/v1/geofences/{gid}", headers=owner.headers)).json()
    assert after["properties"]["name"] == "Central Library"


async def test_anonymous_callers_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/geofences")).status_code == 401
    resp = await client.get("/v1/geofences/resolve", params={"lon": 1, "lat": 1})
    assert resp.status_code == 401
