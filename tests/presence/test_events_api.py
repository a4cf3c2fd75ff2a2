"""GET /v1/events, /v1/events/stream, /v1/me/presence and the ping partitions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import Settings
from app.presence import repository, service, stream
from app.presence.models import EventSource, EventType
from tests.factories import Resident, Staff, create_organisation, create_staff
from tests.presence.helpers import T0, P, create_circle, send


def _t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


async def _visit(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, who: Resident | Staff
) -> dict[str, str]:
    lib = await create_circle(
        db, org.id, 0, 0, 40, dwell_s=60, trigger_distance_m=30, name="Library"
    )
    park = await create_circle(db, org.id, 1000, 0, 40, trigger_distance_m=30, name="Park")
    fixes = [P(f"l{i}", 0, 0, _t(30 * i)) for i in range(4)]
    fixes += [P("gone", 500, 0, _t(200)), P("gone2", 510, 0, _t(210))]
    fixes += [P("park", 1000, 0, _t(400)), P("park2", 1000, 0, _t(410))]
    await send(client, who.headers, [f.ping() for f in fixes])
    return {"library": str(lib), "park": str(park)}


async def test_staff_list_their_organisations_events_with_filters_and_cursor(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    editor: Staff,
) -> None:
    places = await _visit(client, db, org, resident)
    r = await client.get("/v1/events", headers=editor.headers)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(e["type"], e["ping_id"]) for e in items] == [
        ("enter", "park2"),
        ("nearby", "park"),
        ("exit", "gone2"),
        ("dwell", "l2"),
        ("enter", "l1"),
        ("nearby", "l0"),
    ]
    assert all(e["device_id"] == str(resident.id) for e in items)
    by_place = await client.get(
        "/v1/events", params={"geofence_id": places["library"]}, headers=editor.headers
    )
    assert [e["type"] for e in by_place.json()["items"]] == ["exit", "dwell", "enter", "nearby"]
    by_type = await client.get(
        "/v1/events", params=[("type", "enter"), ("type", "dwell")], headers=editor.headers
    )
    assert [e["type"] for e in by_type.json()["items"]] == ["enter", "dwell", "enter"]
    window = await client.get(
        "/v1/events",
        params={"since": _t(60).isoformat(), "until": _t(300).isoformat()},
        headers=editor.headers,
    )
    assert [e["type"] for e in window.json()["items"]] == ["exit", "dwell"]
    # page through one at a time
    seen, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/events", params=params, headers=editor.headers)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [e["id"] for e in items]


async def test_events_of_another_organisation_are_invisible(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    resident: Resident,
) -> None:
    await _visit(client, db, org, resident)
    other = await create_organisation(db)
    stranger = await create_staff(db, settings, other, Role.admin)
    r = await client.get("/v1/events", headers=stranger.headers)
    assert r.json()["items"] == []


async def test_residents_cannot_read_the_event_log(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    assert (await client.get("/v1/events", headers=resident.headers)).status_code == 403
    assert (await client.get("/v1/events/stream", headers=resident.headers)).status_code == 403


async def test_event_filters_need_time_zones_and_valid_types(
    client: httpx.AsyncClient, editor: Staff
) -> None:
    r = await client.get(
        "/v1/events", params={"since": "2026-11-25T10:00:00"}, headers=editor.headers
    )
    assert r.status_code == 422
    r = await client.get("/v1/events", params={"type": "teleported"}, headers=editor.headers)
    assert r.status_code == 422
    r = await client.get("/v1/events", params={"cursor": "not-a-cursor"}, headers=editor.headers)
    assert r.status_code == 422


async def test_suppressed_candidates_are_listed_only_on_request(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    editor: Staff,
) -> None:
    await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=0)
    await send(client, resident.headers, [P("later", 2000, 0, _t(600)).ping()])
    late = await send(client, resident.headers, [P("earlier", 0, 0, _t(0)).ping()])
    assert late["events"] == []
    assert (await client.get("/v1/events", headers=editor.headers)).json()["items"] == []
    r = await client.get(
        "/v1/events", params={"include_suppressed": "true"}, headers=editor.headers
    )
    items = r.json()["items"]
    # what the late fix would have done: one fix inside is a nearby (an enter needs two)
    assert [(e["type"], e["suppressed_reason"], e["ping_id"]) for e in items] == [
        ("nearby", "late_fix", "earlier")
    ]
    assert items[0]["explanation"]["suppressed"] == "late_fix"


async def test_my_presence_shows_where_a_field_worker_is(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    places = await _visit(client, db, org, worker)
    r = await client.get("/v1/me/presence", headers=worker.headers)
    assert [(p["geofence_id"], p["name"], p["state"]) for p in r.json()] == [
        (places["park"], "Park", "inside")
    ]


def _share_test_session(app: FastAPI, db: AsyncSession) -> None:
    @asynccontextmanager
    async def factory() -> AsyncIterator[AsyncSession]:
        yield db

    app.dependency_overrides[stream.session_factory] = lambda: factory


async def test_event_stream_replays_the_organisations_events_as_sse(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    editor: Staff,
) -> None:
    _share_test_session(app, db)
    since = await repository.db_now(db) - timedelta(seconds=1)
    await _visit(client, db, org, resident)
    r = await client.get(
        "/v1/events/stream",
        params={"since": since.isoformat(), "follow": "false"},
        headers=editor.headers,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b.startswith("id: ")]
    kinds = [b.split("\n")[1].removeprefix("event: ") for b in blocks]
    assert sorted(kinds) == ["dwell", "enter", "enter", "exit", "nearby", "nearby"]
    # resuming after the last message sends nothing again
    last_id = blocks[-1].split("\n")[0].removeprefix("id: ")
    r = await client.get(
        "/v1/events/stream",
        params={"follow": "false"},
        headers={**editor.headers, "Last-Event-ID": last_id},
    )
    assert [b for b in r.text.split("\n\n") if b.startswith("id: ")] == []


async def test_event_stream_follows_new_events_once_each(
    db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    lib = await create_circle(db, org.id, 0, 0, 40)

    @asynccontextmanager
    async def factory() -> AsyncIterator[AsyncSession]:
        yield db

    def row(kind: EventType, org_id: object = org.id) -> dict[str, object]:
        return service.event_row(
            organisation_id=org_id,  # type: ignore[arg-type]
            geofence_id=lib,
            type=kind,
            source=EventSource.ping,
            occurred_at=datetime.now(UTC),
            device_id=resident.id,
        )

    other_org = await create_organisation(db)
    other_lib = await create_circle(db, other_org.id, 0, 0, 40)
    polls = 0

    async def is_disconnected() -> bool:
        nonlocal polls
        polls += 1
        if polls == 1:
            await service.record_events(db, [row(EventType.exit)])
            foreign = row(EventType.enter, other_org.id) | {"geofence_id": other_lib}
            await service.record_events(db, [foreign])
        return polls > 3

    start = (await repository.db_now(db) - timedelta(seconds=1), uuid.UUID(int=0))
    await service.record_events(db, [row(EventType.enter)])
    out = [
        m
        async for m in stream.event_stream(
            factory, org.id, start, poll_s=0, follow=True, is_disconnected=is_disconnected
        )
    ]
    kinds = [m.split(b"\n")[1] for m in out if m.startswith(b"id: ")]
    assert kinds == [b"event: enter", b"event: exit"]
    assert polls == 4


async def test_partitions_are_created_ahead_and_expired_ones_dropped(
    db: AsyncSession, settings: Settings
) -> None:
    future = datetime.now(UTC) + timedelta(days=30)
    outcome = await service.maintain_ping_partitions(db, settings, now=future)
    days = await repository.ping_partition_days(db)
    assert days[0] == (future - timedelta(hours=settings.ping_retention_h)).date()
    assert days[-1] == (future + timedelta(days=2)).date()
    assert outcome["created"] >= 3
    assert outcome["dropped"]


async def test_a_missing_day_partition_is_created_by_the_batch(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    when = datetime.now(UTC) - timedelta(minutes=1)
    await db.execute(text(f"DROP TABLE IF EXISTS pings_p{when:%Y%m%d}"))
    await db.commit()
    body = await send(client, resident.headers, [P("fresh", 10, 10, when).ping()])
    assert body["accepted"] == 1
    assert when.date() in await repository.ping_partition_days(db)


async def test_erasing_a_subject_removes_its_pings_presence_and_events(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await _visit(client, db, org, resident)
    await service.erase_subject(db, resident.id)
    for table, column in (
        ("pings", "subject_id"),
        ("presence", "subject_id"),
        ("presence_subjects", "subject_id"),
        ("presence_events", "device_id"),
        ("device_settings", "device_id"),
    ):
        n = await db.scalar(
            text(f"SELECT count(*) FROM {table} WHERE {column} = :s"), {"s": resident.id}
        )
        assert n == 0, table
