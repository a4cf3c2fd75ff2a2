"""Staff location is kept STAFF_TRACK_RETENTION_DAYS (30), apart from residents' 24 h pings,
and the worker's own export holds it with their shifts and pauses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.presence import repository as presence_repository
from app.presence import service as presence_service
from app.privacy import service as privacy_service
from tests.factories import Resident, Staff
from tests.shifts.helpers import fix, stored


async def _send(client: httpx.AsyncClient, who: Staff | Resident, prefix: str, n: int = 3) -> None:
    body = {"pings": [fix(i, 120 - i * 30, east_m=500, prefix=prefix) for i in range(n)]}
    r = await client.post("/v1/pings?mode=sync", json=body, headers=who.headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == n


async def _age(db: AsyncSession, subject_id: uuid.UUID, by: timedelta) -> None:
    """Make the subject's fixes `by` older, in the pings and in the staff location history."""
    await presence_repository.ensure_ping_partitions(
        db, (datetime.now(UTC) - by - timedelta(days=1)).date(), datetime.now(UTC).date()
    )
    for table, who in (("pings", "subject_id"), ("staff_track_points", "staff_user_id")):
        await db.execute(
            text(
                f"UPDATE {table} SET recorded_at = recorded_at - CAST(:by AS interval) "
                f"WHERE {who} = :s"
            ),
            {"by": by, "s": subject_id},
        )


async def test_a_staff_fix_outlives_the_residents_24_hours_until_its_own_period(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    worker: Staff,
    resident: Resident,
) -> None:
    await _send(client, worker, "w")
    await _send(client, resident, "r")
    await _age(db, worker.id, timedelta(days=2))
    await _age(db, resident.id, timedelta(days=2))

    removed = await privacy_service.purge(db, settings)

    assert (await stored(db, resident.id))["pings"] == 0  # the resident's: 24 h
    staff = await stored(db, worker.id)
    assert (staff["pings"], staff["staff_track_points"]) == (0, 3)  # the worker's: kept
    assert removed["staff_fixes_archived"] == 3
    # the worker's export still has them
    export = (await client.get("/v1/users/me/export", headers=worker.headers)).json()
    assert sorted(f["properties"]["id"] for f in export["track"]["features"]) == ["w0", "w1", "w2"]

    # 31 days old: past STAFF_TRACK_RETENTION_DAYS (30)
    await _age(db, worker.id, timedelta(days=29))
    removed = await privacy_service.purge(db, settings)
    assert removed["staff_track_points"] == 3
    assert (await stored(db, worker.id))["staff_track_points"] == 0


async def test_a_council_sets_a_shorter_staff_period(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, worker: Staff
) -> None:
    await _send(client, worker, "w")
    await _age(db, worker.id, timedelta(days=2))
    shorter = settings.model_copy(update={"staff_track_retention_days": 1})
    await privacy_service.purge(db, shorter)
    assert (await stored(db, worker.id))["staff_track_points"] == 0  # never archived
    assert (await stored(db, worker.id))["pings"] == 0


async def test_dropping_a_ping_partition_keeps_the_staff_fixes_in_it(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    worker: Staff,
    resident: Resident,
) -> None:
    """Startup and `hereabouts pings maintain` drop whole days too, without the purge."""
    await _send(client, worker, "w")
    await _send(client, resident, "r")
    later = datetime.now(UTC) + timedelta(days=3)
    dropped = (await presence_service.maintain_ping_partitions(db, settings, later))["dropped"]
    assert datetime.now(UTC).date().isoformat() in dropped
    assert (await stored(db, resident.id))["pings"] == 0
    assert (await stored(db, worker.id))["staff_track_points"] == 3


async def test_the_workers_export_holds_shifts_pauses_and_track(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff, editor: Staff, resident: Resident
) -> None:
    h = worker.headers
    assert (
        await client.post("/v1/me/shift/start", json={"hours": 1}, headers=h)
    ).status_code == 201
    await _send(client, worker, "w", n=2)
    assert (await client.post("/v1/me/shift/end", headers=h)).status_code == 200
    assert (await client.post("/v1/me/tracking/pause", headers=h)).status_code == 201
    r = await client.get("/v1/users/me/export", headers=h)
    assert r.status_code == 200, r.text
    export = r.json()
    assert export["account"]["id"] == str(worker.id)
    assert "password_hash" not in r.text
    assert [(s["kind"], s["open"]) for s in export["shifts"]] == [("shift", False), ("pause", True)]
    assert [f["properties"]["id"] for f in export["track"]["features"]] == ["w0", "w1"]
    assert export["track"]["features"][0]["geometry"]["type"] == "Point"
    assert export["retention"]["staff_track"].startswith("30 days")
    # another staff member's export holds none of it; residents use GET /v1/me/export
    other = (await client.get("/v1/users/me/export", headers=editor.headers)).json()
    assert (other["shifts"], other["track"]["features"]) == ([], [])
    assert (await client.get("/v1/users/me/export", headers=resident.headers)).status_code == 403
    assert (await client.get("/v1/users/me/export")).status_code == 401
