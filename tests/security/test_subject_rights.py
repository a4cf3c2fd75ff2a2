"""GET /v1/me/export and DELETE /v1/me (and the admin's versions): everything, then nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests import factories
from tests.security.people import LAT, LON, holdings, person_with_everything


async def test_export_holds_everything_about_the_caller_as_geojson(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    p = await person_with_everything(client, db, settings, org)
    other = await person_with_everything(client, db, settings, org)
    r = await client.get("/v1/me/export", headers=p.resident.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["device"]["id"] == str(p.resident.id)
    assert data["settings"]["background_location"] is True
    assert data["pings"]["type"] == "FeatureCollection"
    assert {f["properties"]["id"] for f in data["pings"]["features"]} == {"p0", "p1", "p2"}
    assert data["pings"]["features"][-1]["geometry"] == {"type": "Point", "coordinates": [LON, LAT]}
    [checkin] = data["checkins"]["features"]
    assert checkin["geometry"]["coordinates"] == [LON, LAT]
    assert checkin["properties"]["geofence_id"] == str(p.place_id)
    assert {f["properties"]["type"] for f in data["events"]["features"]} >= {"enter", "checkin"}
    assert [x["geofence_id"] for x in data["presence"]] == [str(p.place_id)]
    assert str(p.notification_id) in {n["id"] for n in data["notifications"]}
    assert len(data["deliveries"]) == 1
    assert len(data["subscriptions"]) == 1
    assert len(data["redemptions"]) == 1
    assert data["retention"]["pings"] == f"{settings.ping_retention_h} hours"
    # nothing of the other resident's
    assert str(other.resident.id) not in r.text
    assert str(other.notification_id) not in r.text


async def test_erasing_me_leaves_nothing_but_counts_and_revokes_the_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    p = await person_with_everything(client, db, settings, org)
    other = await person_with_everything(client, db, settings, org)
    before = await holdings(db, p.resident.id)
    assert all(n > 0 for n in before.values()), before
    other_before = await holdings(db, other.resident.id)

    r = await client.delete("/v1/me", headers=p.resident.headers)
    assert r.status_code == 204, r.text

    assert await holdings(db, p.resident.id) == dict.fromkeys(before, 0)
    assert await holdings(db, other.resident.id) == other_before
    # the check-in is now only a count for its place and hour
    counts = (
        await db.execute(
            text("SELECT checkins, people FROM checkin_counts WHERE geofence_id = :g"),
            {"g": p.place_id},
        )
    ).all()
    assert [tuple(c) for c in counts] == [(1, 1)]
    # the token no longer works
    assert (await client.get("/v1/me", headers=p.resident.headers)).status_code == 401
    assert (await client.get("/v1/me/export", headers=p.resident.headers)).status_code == 401


async def test_admin_exports_and_erases_a_resident_on_request_and_it_is_audited(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    other_org = await factories.create_organisation(db)
    p = await person_with_everything(client, db, settings, org)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    other_admin = await factories.create_staff(db, settings, other_org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    await db.commit()
    url = f"/v1/devices/{p.resident.id}"

    assert (await client.get(url + "/export", headers=editor.headers)).status_code == 403
    assert (await client.get(url + "/export", headers=other_admin.headers)).status_code == 404
    assert (await client.delete(url, headers=other_admin.headers)).status_code == 404
    export = await client.get(url + "/export", headers=admin.headers)
    assert export.status_code == 200
    assert len(export.json()["checkins"]["features"]) == 1

    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert sum((await holdings(db, p.resident.id)).values()) == 0
    assert (await client.get(url + "/export", headers=admin.headers)).status_code == 404
    audit = (await client.get("/v1/audit", headers=admin.headers)).json()["items"]
    actions = [(a["action"], a["entity_id"]) for a in audit]
    assert ("device.export", str(p.resident.id)) in actions
    assert ("device.erase", str(p.resident.id)) in actions
