"""Ad-hoc shifts and pauses: started and ended by the worker, recorded, audited, listed; an
ad-hoc shift ends by itself at its maximum length."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.shifts import service as shifts_service
from tests.factories import Resident, Staff
from tests.shifts.helpers import add_period, fix, off_shift


async def audit(db: AsyncSession, org_id: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT action, actor_id, entity_id FROM audit_log WHERE organisation_id = :o "
            "AND entity_type = 'staff_period' ORDER BY at, action"
        ),
        {"o": org_id},
    )
    return [tuple(r) for r in rows]


async def periods(db: AsyncSession, worker: Staff) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT kind, ended_at IS NULL, end_reason FROM staff_periods "
            "WHERE staff_user_id = :s ORDER BY started_at"
        ),
        {"s": worker.id},
    )
    return [tuple(r) for r in rows]


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_worker_starts_and_ends_an_adhoc_shift(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    await off_shift(client, worker)
    h = worker.headers
    status = (await client.get("/v1/me/tracking", headers=h)).json()
    assert (status["on_shift"], status["reason"], status["adhoc_shift"]) == (
        False,
        "outside-shift",
        None,
    )
    r = await client.post("/v1/me/shift/start", headers=h)
    assert r.status_code == 201, r.text
    shift = r.json()
    assert (shift["kind"], shift["open"], shift["ended_at"]) == ("shift", True, None)
    length = _t(shift["ends_by"]) - _t(shift["started_at"])
    assert length == timedelta(hours=12)  # STAFF_ADHOC_SHIFT_MAX_H
    status = (await client.get("/v1/me/tracking", headers=h)).json()
    assert (status["on_shift"], status["reason"]) == (True, "ad-hoc-shift")
    assert status["adhoc_shift"]["id"] == shift["id"]
    r = await client.post("/v1/pings?mode=sync", json={"pings": [fix(0, 1)]}, headers=h)
    assert r.status_code == 200, r.text  # fixes taken during the ad-hoc shift are kept

    again = await client.post("/v1/me/shift/start", headers=h)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/shift-already-started")

    r = await client.post("/v1/me/shift/end", headers=h)
    assert r.status_code == 200, r.text
    ended = r.json()
    assert (ended["id"], ended["open"], ended["end_reason"]) == (shift["id"], False, "worker")
    assert ended["ended_at"] is not None
    assert (await client.get("/v1/me/tracking", headers=h)).json()["on_shift"] is False
    r = await client.post("/v1/pings?mode=sync", json={"pings": [fix(1, 0)]}, headers=h)
    assert r.status_code == 409
    again = await client.post("/v1/me/shift/end", headers=h)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/no-open-shift")

    assert await audit(db, worker.organisation_id) == [
        ("shift.start", worker.id, uuid.UUID(shift["id"])),
        ("shift.end", worker.id, uuid.UUID(shift["id"])),
    ]
    listed = (await client.get("/v1/me/shifts", headers=h)).json()
    assert [(p["id"], p["kind"], p["open"]) for p in listed["items"]] == [
        (shift["id"], "shift", False)
    ]


async def test_a_shorter_adhoc_shift_and_the_limit(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff
) -> None:
    r = await client.post("/v1/me/shift/start", json={"hours": 2.5}, headers=worker.headers)
    assert r.status_code == 201, r.text
    shift = r.json()
    assert _t(shift["ends_by"]) - _t(shift["started_at"]) == timedelta(hours=2.5)
    await client.post("/v1/me/shift/end", headers=worker.headers)
    r = await client.post("/v1/me/shift/start", json={"hours": 13}, headers=worker.headers)
    assert r.status_code == 422
    assert r.json()["type"].endswith("/shift-too-long")
    assert r.json()["max_hours"] == 12
    assert len(await periods(db, worker)) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/me/shift/start", {"hours": 0}),
        ("/v1/me/shift/start", {"hours": -1}),
        ("/v1/me/shift/start", {"hours": "long"}),
        ("/v1/me/shift/start", {"hours": 48}),
        ("/v1/me/shift/start", {"minutes": 30}),
        ("/v1/me/shift/start", [1, 2]),
        ("/v1/me/shift/end", {"now": True}),
        ("/v1/me/tracking/pause", {"until": "tomorrow"}),
        ("/v1/me/tracking/resume", {"x": 1}),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    worker: Staff,
    path: str,
    body: Any,
) -> None:
    r = await client.post(path, json=body, headers=worker.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await periods(db, worker) == []
    assert await audit(db, worker.organisation_id) == []


@pytest.mark.parametrize(
    "params", [{"kind": "holiday"}, {"cursor": "not-a-cursor"}, {"limit": "many"}]
)
async def test_bad_list_parameters(
    client: httpx.AsyncClient, worker: Staff, params: dict[str, str]
) -> None:
    r = await client.get("/v1/me/shifts", params=params, headers=worker.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_pause_and_resume_are_recorded_and_audited(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    h = worker.headers
    r = await client.post("/v1/me/tracking/pause", headers=h)
    assert r.status_code == 201, r.text
    pause = r.json()
    status = (await client.get("/v1/me/tracking", headers=h)).json()
    assert (status["on_shift"], status["reason"]) == (False, "paused")
    assert status["paused_since"] == pause["started_at"]
    again = await client.post("/v1/me/tracking/pause", headers=h)
    assert (again.status_code, again.json()["type"].split("/")[-1]) == (409, "already-paused")
    r = await client.post("/v1/me/tracking/resume", headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["open"]) == (pause["id"], False)
    again = await client.post("/v1/me/tracking/resume", headers=h)
    assert (again.status_code, again.json()["type"].split("/")[-1]) == (409, "not-paused")
    status = (await client.get("/v1/me/tracking", headers=h)).json()
    assert (status["on_shift"], status["reason"]) == (True, "no-shift-set")
    assert await audit(db, worker.organisation_id) == [
        ("tracking.pause", worker.id, uuid.UUID(pause["id"])),
        ("tracking.resume", worker.id, uuid.UUID(pause["id"])),
    ]
    listed = (await client.get("/v1/me/shifts?kind=pause", headers=h)).json()["items"]
    assert [p["id"] for p in listed] == [pause["id"]]
    assert (await client.get("/v1/me/shifts?kind=shift", headers=h)).json()["items"] == []


async def test_an_adhoc_shift_ends_by_itself(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    await off_shift(client, worker)
    now = datetime.now(UTC)
    shift_id = await add_period(
        db, worker, "shift", now - timedelta(hours=13), ends_by=now - timedelta(hours=1)
    )
    # past its length it no longer counts, before any job has run
    r = await client.post("/v1/pings", json={"pings": [fix(0, 1)]}, headers=worker.headers)
    assert r.status_code == 409
    listed = (await client.get("/v1/me/shifts", headers=worker.headers)).json()["items"]
    assert [(p["open"], p["end_reason"]) for p in listed] == [(False, "auto")]
    # the scheduled job closes it in the record, with an audit entry by nobody (the server)
    assert await shifts_service.end_expired_shifts(db) == 1
    assert await periods(db, worker) == [("shift", False, "auto")]
    assert await audit(db, worker.organisation_id) == [("shift.auto_end", None, shift_id)]
    assert await shifts_service.end_expired_shifts(db) == 0
    ended_at = (
        await db.execute(text("SELECT ended_at FROM staff_periods WHERE id = :i"), {"i": shift_id})
    ).scalar_one()
    assert abs(ended_at - (now - timedelta(hours=1))) < timedelta(seconds=1)


async def test_a_new_shift_closes_an_expired_one_first(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    now = datetime.now(UTC)
    old = await add_period(
        db, worker, "shift", now - timedelta(hours=13), ends_by=now - timedelta(hours=1)
    )
    r = await client.post("/v1/me/shift/start", headers=worker.headers)
    assert r.status_code == 201, r.text
    assert await periods(db, worker) == [("shift", False, "auto"), ("shift", True, None)]
    assert [a[0] for a in await audit(db, worker.organisation_id)] == [
        "shift.auto_end",
        "shift.start",
    ]
    assert (await audit(db, worker.organisation_id))[0][2] == old


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me/tracking"),
        ("POST", "/v1/me/shift/start"),
        ("POST", "/v1/me/shift/end"),
        ("POST", "/v1/me/tracking/pause"),
        ("POST", "/v1/me/tracking/resume"),
        ("GET", "/v1/me/shifts"),
    ],
)
async def test_only_field_workers_have_shifts(
    client: httpx.AsyncClient, editor: Staff, resident: Resident, method: str, path: str
) -> None:
    for who in (editor, resident):
        r = await client.request(method, path, headers=who.headers)
        assert r.status_code == 403, r.text
    assert (await client.request(method, path)).status_code == 401


async def test_one_process_ends_shifts_at_a_time(db: AsyncSession, engine: object) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.scheduled import JOBS
    from app.shifts.worker import shift_sweep_loop

    assert isinstance(engine, AsyncEngine)
    assert await shifts_service.end_expired_shifts(db) == 0  # holds the job's lock now
    async with engine.connect() as conn:
        other = AsyncSession(bind=conn)
        assert await shifts_service.end_expired_shifts(other) is None
        await other.close()
    # the scheduled jobs' runner (API processes and `hereabouts worker`) runs the loop
    assert any(job.loop is shift_sweep_loop for job in JOBS)
