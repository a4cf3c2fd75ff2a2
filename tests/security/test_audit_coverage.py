"""Staff writes to places, offers and tasks are in the audit log: who, what, which row."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests import factories
from tests.offers.helpers import quick_staff


async def test_place_offer_and_task_writes_are_audited(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await quick_staff(db, settings, org, Role.admin)
    editor = await quick_staff(db, settings, org, Role.editor)
    worker = await quick_staff(db, settings, org, Role.field_worker)
    await db.commit()
    e = editor.headers
    props: dict[str, Any] = {"name": "Central Library", "category": "library", "radius_m": 40}
    point = {"type": "Point", "coordinates": [-1.2577, 51.752]}
    place = {"type": "Feature", "geometry": point, "properties": props}
    gid = (await client.post("/v1/geofences", json=place, headers=e)).json()["id"]
    patched = await client.patch(
        f"/v1/geofences/{gid}", json={"properties": {"name": "Library"}}, headers=e
    )
    assert patched.status_code == 200
    imported = {
        "type": "FeatureCollection",
        "features": [{**place, "properties": {**props, "external_id": "x1"}}],
    }
    assert (await client.post("/v1/geofences/import", json=imported, headers=e)).status_code == 200
    dry = await client.post(
        "/v1/geofences/import", params={"dry_run": "true"}, json=imported, headers=e
    )
    assert dry.status_code == 200
    offer = await client.post(
        "/v1/offers",
        json={"title": "Talk", "body": "Tonight", "geofence_ids": [gid], "triggers": ["checkin"]},
        headers=e,
    )
    oid = offer.json()["id"]
    await client.patch(f"/v1/offers/{oid}", json={"status": "active"}, headers=e)
    task = await client.post(
        "/v1/tasks",
        json={"title": "Check the lift", "geofence_id": gid, "assignee_ids": [str(worker.id)]},
        headers=e,
    )
    tid = task.json()["id"]
    moved = await client.patch(
        f"/v1/tasks/{tid}", json={"status": "in_progress"}, headers=worker.headers
    )
    assert moved.status_code == 200
    assert (await client.delete(f"/v1/offers/{oid}", headers=e)).status_code == 204
    assert (await client.delete(f"/v1/geofences/{gid}", headers=e)).status_code == 204
    # refused writes leave no entry
    refused = await client.patch(f"/v1/tasks/{tid}", json={"title": "x"}, headers=worker.headers)
    assert refused.status_code in (403, 422)

    items = (await client.get("/v1/audit", params={"limit": 100}, headers=admin.headers)).json()[
        "items"
    ]
    seen = {(a["action"], a["entity_id"], a["actor_id"]) for a in items}
    ed, fw = str(editor.id), str(worker.id)
    for expected in [
        ("geofence.create", gid, ed),
        ("geofence.update", gid, ed),
        ("geofence.delete", gid, ed),
        ("geofence.import", None, ed),
        ("offer.create", oid, ed),
        ("offer.update", oid, ed),
        ("offer.delete", oid, ed),
        ("task.create", tid, ed),
        ("task.update", tid, fw),
    ]:
        assert expected in seen, expected
    assert sum(1 for a in items if a["action"] == "geofence.import") == 1  # not the dry run
    assert sum(1 for a in items if a["action"] == "task.update") == 1  # not the refused one
    update = next(a for a in items if a["action"] == "offer.update")
    assert update["details"] == {"fields": ["status"], "status": "active"}
