"""The activity feed (`GET /v1/activity`): every kind of event, paged, filtered, scoped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.activity import service as activity_service
from app.activity.models import ActivityEvent
from app.core.config import Settings
from app.presence.models import PresenceEvent
from app.tasks.models import TaskTransition
from tests import factories
from tests.places import add_square, offset


async def _day_of_work(client: httpx.AsyncClient, db: AsyncSession, settings: Settings) -> Any:
    """A check-in, a task taken and started, a redemption and a broadcast at one library."""
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    library = await add_square(db, org.id, name="Central Library")
    lon, lat = offset(0, 0)
    r = await client.post(
        "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 8}, headers=resident.headers
    )
    assert r.status_code in (200, 201), r.text
    r = await client.post(
        "/v1/tasks",
        json={"title": "Stock check", "geofence_id": str(library.id)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    for status in ("assigned", "in_progress"):
        r = await client.patch(
            f"/v1/tasks/{task_id}", json={"status": status}, headers=worker.headers
        )
        assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/offers",
        json={
            "title": "Free tea",
            "body": "One per visit",
            "triggers": ["checkin"],
            "geofence_ids": [str(library.id)],
            "status": "active",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/offers/{r.json()['id']}/redeem",
        json={"geofence_id": str(library.id)},
        headers=resident.headers,
    )
    assert r.status_code in (200, 201), r.text
    r = await client.post(
        f"/v1/geofences/{library.id}/broadcast",
        json={"title": "Closing early today", "body": "At 4 pm"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    return org, admin, worker, resident, library, task_id


async def _all(client: httpx.AsyncClient, headers: dict[str, str], query: str = "") -> list[Any]:
    r = await client.get(f"/v1/activity?limit=500{query}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    items: list[Any] = r.json()["items"]
    return items


async def test_every_kind_appears_with_its_words_newest_first(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org, admin, worker, resident, library, task_id = await _day_of_work(client, db, settings)
    items = await _all(client, admin.headers)
    keys = [(i["occurred_at"], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True)
    by_kind: dict[str, list[Any]] = {}
    for i in items:
        by_kind.setdefault(i["kind"], []).append(i)
    # ground truth: what the sources themselves stored
    transitions = (
        await db.execute(
            select(TaskTransition.to_status, TaskTransition.actor_id).where(
                TaskTransition.task_id == uuid.UUID(task_id)
            )
        )
    ).all()
    assert sorted(i["data"]["to_status"] for i in by_kind["task"]) == sorted(
        t.to_status for t in transitions
    )
    started = next(i for i in by_kind["task"] if i["type"] == "task.in_progress")
    assert started["data"]["title"] == "Stock check"
    assert started["actor"] == {
        "kind": "staff",
        "id": str(worker.id),
        "name": "Test field_worker",
        "role": "field_worker",
    }
    [redeemed] = by_kind["redemption"]
    assert redeemed["type"] == "offer.redeemed"
    assert redeemed["data"]["offer_title"] == "Free tea"
    assert redeemed["actor"] == {
        "kind": "resident",
        "id": str(resident.id),
        "name": None,
        "role": None,
    }
    assert redeemed["geofence_id"] == str(library.id)
    [sent] = by_kind["broadcast"]
    assert sent["data"]["title"] == "Closing early today"
    assert sent["actor"]["name"] == "Test admin"
    # the resident was checked in there: the broadcast reached them
    assert sent["data"]["recipients"] == 1
    presence = (
        await db.execute(
            select(func.count())
            .select_from(PresenceEvent)
            .where(
                PresenceEvent.organisation_id == org.id, PresenceEvent.suppressed_reason.is_(None)
            )
        )
    ).scalar_one()
    assert len(by_kind.get("checkin", [])) + len(by_kind.get("presence", [])) == presence
    assert [i["type"] for i in by_kind["checkin"]] == ["checkin.created"]
    assert by_kind["checkin"][0]["explanation"]  # why it counted (inside, distance, ...)


async def test_filters_by_kind_and_place_and_pages_without_gaps(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org, admin, _, _, library, _ = await _day_of_work(client, db, settings)
    other_place = await add_square(db, org.id, name="Pool", cx_m=2000.0)
    r = await client.post(
        f"/v1/geofences/{other_place.id}/broadcast",
        json={"title": "Pool closed"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    everything = await _all(client, admin.headers)
    tasks = await _all(client, admin.headers, "&kind=task")
    assert tasks
    assert {i["kind"] for i in tasks} == {"task"}
    assert tasks == [i for i in everything if i["kind"] == "task"]
    two = await _all(client, admin.headers, "&kind=broadcast&kind=redemption")
    assert [i["data"].get("title") or i["data"].get("offer_title") for i in two] == [
        "Pool closed",
        "Closing early today",
        "Free tea",
    ]
    at_library = await _all(client, admin.headers, f"&geofence_id={library.id}")
    assert at_library == [i for i in everything if i["geofence_id"] == str(library.id)]
    assert "Pool closed" not in str(at_library)
    # pages of 2 walk the same list, each item once
    walked: list[Any] = []
    cursor = ""
    while True:
        r = await client.get(f"/v1/activity?limit=2{cursor}", headers=admin.headers)
        assert r.status_code == 200, r.text
        walked += r.json()["items"]
        if r.json()["next_cursor"] is None:
            break
        cursor = f"&cursor={r.json()['next_cursor']}"
    assert walked == everything
    assert len(everything) >= 7


async def test_scoped_to_the_organisation_and_bad_input_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org, admin, worker, resident, library, _ = await _day_of_work(client, db, settings)
    other = await factories.create_organisation(db)
    stranger = await factories.create_staff(db, settings, other, Role.admin)
    assert await _all(client, stranger.headers) == []
    r = await client.get(f"/v1/activity?geofence_id={library.id}", headers=stranger.headers)
    assert r.status_code == 404
    r = await client.get("/v1/activity?kind=gossip", headers=admin.headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/activity", headers=resident.headers)).status_code in (401, 403)
    assert (await client.get("/v1/activity")).status_code == 401
    # a field worker reads the organisation's feed, as the event log
    assert await _all(client, worker.headers) == await _all(client, admin.headers)


async def test_erasing_a_device_removes_its_events_and_old_events_are_purged(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org, admin, _, resident, _, _ = await _day_of_work(client, db, settings)
    mine = (
        select(func.count())
        .select_from(ActivityEvent)
        .where(ActivityEvent.device_id == resident.id)
    )
    assert (await db.execute(mine)).scalar_one() == 1  # the redemption
    assert (await client.delete("/v1/me", headers=resident.headers)).status_code == 204
    assert (await db.execute(mine)).scalar_one() == 0
    assert "redemption" not in {i["kind"] for i in await _all(client, admin.headers)}
    kept = (
        select(func.count())
        .select_from(ActivityEvent)
        .where(ActivityEvent.organisation_id == org.id)
    )
    before = (await db.execute(kept)).scalar_one()
    assert before > 0
    now = datetime.now(UTC)
    retention = timedelta(days=settings.presence_event_retention_days)
    assert await activity_service.purge(db, retention, now) == 0
    removed = await activity_service.purge(db, retention, now + retention + timedelta(minutes=5))
    assert removed >= before
    assert (await db.execute(kept)).scalar_one() == 0
