"""What a check-in hands back: a resident's offers, a field worker's tasks and proof of visit."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests import factories
from tests.places import add_square, offset


def here(dx: float = 0, dy: float = 0) -> dict[str, Any]:
    lon, lat = offset(dx, dy)
    return {"lon": lon, "lat": lat, "accuracy_m": 8}


async def _offer(client: httpx.AsyncClient, editor: factories.Staff, **fields: Any) -> str:
    body = {
        "title": "Author evening",
        "body": "Tonight 7pm, free",
        "triggers": ["checkin"],
        "status": "active",
        **fields,
    }
    resp = await client.post("/v1/offers", json=body, headers=editor.headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_resident_sees_the_libraries_offers_and_never_staff_tasks(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    library = await add_square(db, org.id, name="Central Library")
    library_id = str(library.id)
    elsewhere = await add_square(db, org.id, name="Pool", category="leisure_centre", cx_m=3000)
    elsewhere_id = str(elsewhere.id)
    at_library = await _offer(client, editor, geofence_ids=[library_id])
    every_library = await _offer(client, editor, title="Free printing", category="library")
    await _offer(client, editor, title="Swim discount", geofence_ids=[elsewhere_id])
    await _offer(client, editor, title="Staff coffee", category="library", audience="staff")
    await _offer(client, editor, title="Only on enter", category="library", triggers=["enter"])
    task = await client.post(
        "/v1/tasks",
        json={"title": "Stock check", "geofence_id": library_id, "assignee_ids": [str(worker.id)]},
        headers=editor.headers,
    )
    assert task.status_code == 201, task.text

    resp = await client.post("/v1/checkins", json=here(), headers=resident.headers)
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert {o["id"] for o in data["offers"]} == {at_library, every_library}
    assert data["tasks"] == []
    assert "triggers" not in data["offers"][0]  # residents get the public view only

    seen = await client.post("/v1/checkins", json=here(), headers=worker.headers)
    assert seen.status_code == 201, seen.text
    assert [t["title"] for t in seen.json()["tasks"]] == ["Stock check"]
    assert [o["title"] for o in seen.json()["offers"]] == ["Staff coffee"]


async def test_closed_place_limits_offers_to_those_allowed_outside_opening_hours(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    resident = await factories.create_resident(db, org)
    never_open = {"time_zone": "Europe/London", "weekly": {}, "closed_dates": []}
    await add_square(db, org.id, name="Closed library", opening_hours=never_open)
    await _offer(client, editor, title="Opening-hours only", category="library")
    anytime = await _offer(
        client, editor, title="Book drop", category="library", outside_opening_hours_ok=True
    )
    resp = await client.post("/v1/checkins", json=here(), headers=resident.headers)
    assert resp.status_code == 201
    assert resp.json()["place"]["open"] is False
    assert [o["id"] for o in resp.json()["offers"]] == [anytime]


async def test_field_worker_checkin_is_proof_of_visit_that_lets_the_task_be_done(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    other_worker = await factories.create_staff(db, settings, org, Role.field_worker)
    depot = await add_square(db, org.id, name="Depot", category="depot")
    depot_id = str(depot.id)
    created = await client.post(
        "/v1/tasks",
        json={
            "title": "Inspect gritter",
            "geofence_id": depot_id,
            "requires_visit": True,
            "assignee_ids": [str(worker.id)],
        },
        headers=editor.headers,
    )
    task_id = created.json()["id"]
    pool = await client.post(
        "/v1/tasks",
        json={"title": "Sweep yard", "geofence_id": depot_id},
        headers=editor.headers,
    )
    assert pool.status_code == 201

    started = await client.patch(
        f"/v1/tasks/{task_id}", json={"status": "in_progress"}, headers=worker.headers
    )
    assert started.status_code == 200, started.text
    early = await client.patch(
        f"/v1/tasks/{task_id}", json={"status": "done"}, headers=worker.headers
    )
    assert early.status_code == 409, early.text
    assert early.json()["type"].endswith("/visit-required")

    # someone else's check-in there proves nothing for this task
    theirs = await client.post("/v1/checkins", json=here(), headers=other_worker.headers)
    assert theirs.json()["proof_of_visit_for"] == []

    resp = await client.post("/v1/checkins", json=here(), headers=worker.headers)
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert data["proof_of_visit_for"] == [task_id]
    assert {t["title"] for t in data["tasks"]} == {"Inspect gritter", "Sweep yard"}

    shown = await client.get(f"/v1/tasks/{task_id}", headers=worker.headers)
    assert shown.json()["proof_checkin_id"] == data["checkin"]["id"]
    done = await client.patch(
        f"/v1/tasks/{task_id}", json={"status": "done"}, headers=worker.headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"


async def test_implausible_jump_earns_no_offer_and_no_proof_of_visit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    from datetime import UTC, datetime, timedelta

    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Far library", cx_m=-30_000)
    depot = await add_square(db, org.id, name="Depot", category="depot")
    await _offer(client, editor, category="library")
    task = await client.post(
        "/v1/tasks",
        json={
            "title": "Visit",
            "geofence_id": str(depot.id),
            "requires_visit": True,
            "assignee_ids": [str(worker.id)],
        },
        headers=editor.headers,
    )
    assert task.status_code == 201
    now = datetime.now(UTC)
    for who, first, second in ((resident, here(-30_000), here()), (worker, here(-30_000), here())):
        # the far library is a library; for the worker only the depot matters
        await client.post(
            "/v1/checkins",
            json={**first, "recorded_at": (now - timedelta(minutes=1)).isoformat()},
            headers=who.headers,
        )
        jump = await client.post(
            "/v1/checkins", json={**second, "recorded_at": now.isoformat()}, headers=who.headers
        )
        assert jump.status_code == 201, jump.text
        assert jump.json()["checkin"]["implausible_jump"] is True
        assert jump.json()["offers"] == []
        assert jump.json()["proof_of_visit_for"] == []
