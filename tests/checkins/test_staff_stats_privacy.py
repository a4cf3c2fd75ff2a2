"""Staff check-ins in aggregates: counts must not locate a worker (docs/privacy.md, "Staff").

With one field worker on shift, "1 staff check-in at the park, 14:00-15:00" is where that worker
was. Staff cells follow the residents' small-cell suppression; the activity feed leaves out
colleagues' check-ins and presence; a window is widened to whole buckets so two nearly equal
windows cannot be subtracted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.checkins.models import CheckIn
from app.core.config import Settings
from tests import factories
from tests.places import add_square, offset


def _at(dx: float, when: datetime) -> dict[str, object]:
    lon, lat = offset(dx, 0)
    return {"lon": lon, "lat": lat, "accuracy_m": 8, "recorded_at": when.isoformat()}


def _hour_ago() -> datetime:
    return datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=1)


async def _stats(
    client: httpx.AsyncClient, place_id: object, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/geofences/{place_id}/checkins/stats", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["min_cell_size"] == 10
    buckets: list[dict[str, Any]] = r.json()["buckets"]
    return buckets


async def test_one_workers_checkin_is_not_shown_per_hour_or_day(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    park = await add_square(db, org.id, name="Preston Park")
    at = _hour_ago()
    r = await client.post("/v1/checkins", json=_at(0, at), headers=worker.headers)
    assert r.status_code == 201, r.text
    # ground truth: the check-in is stored and is the worker's
    stored = (
        await db.execute(
            select(func.count()).where(
                CheckIn.geofence_id == park.id, CheckIn.staff_user_id == worker.id
            )
        )
    ).scalar_one()
    assert stored == 1
    for bucket in ("hour", "day"):
        cells = await _stats(client, park.id, editor.headers, bucket=bucket, tz="UTC")
        assert len(cells) == 1
        assert (cells[0]["staff_checkins"], cells[0]["staff_distinct"]) == (None, None)
        assert (cells[0]["residents_checkins"], cells[0]["residents_distinct"]) == (None, None)


async def test_enough_workers_are_still_counted(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    depot = await add_square(db, org.id, name="Hollingdean depot")
    quiet = await add_square(db, org.id, name="Quiet depot", cx_m=5_000)
    at = _hour_ago()
    workers = [
        await factories.create_staff(db, settings, org, Role.field_worker) for _ in range(10)
    ]
    for i, worker in enumerate(workers):
        r = await client.post(
            "/v1/checkins", json=_at(0, at + timedelta(minutes=i)), headers=worker.headers
        )
        assert r.status_code == 201, r.text
    for i, worker in enumerate(workers[:9]):  # nine people: one fewer than the threshold
        r = await client.post(
            "/v1/checkins", json=_at(5_000, at + timedelta(minutes=i)), headers=worker.headers
        )
        assert r.status_code == 201, r.text
    truth = dict(
        (
            await db.execute(
                select(CheckIn.geofence_id, func.count())
                .where(CheckIn.staff_user_id.is_not(None), CheckIn.organisation_id == org.id)
                .group_by(CheckIn.geofence_id)
            )
        ).all()
    )
    [cell] = await _stats(client, depot.id, editor.headers, bucket="hour", tz="UTC")
    assert (cell["staff_checkins"], cell["staff_distinct"]) == (truth[depot.id], 10)
    [cell] = await _stats(client, quiet.id, editor.headers, bucket="hour", tz="UTC")
    assert truth[quiet.id] == 9
    assert (cell["staff_checkins"], cell["staff_distinct"]) == (None, None)


async def test_a_window_is_widened_to_whole_buckets(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Two windows ten minutes apart must not differ by the check-ins of those ten minutes."""
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    library = await add_square(db, org.id, name="Hove library")
    at = _hour_ago()  # hh:05
    for i in range(12):  # hh:05 .. hh:16, one resident each
        resident = await factories.create_resident(db, org)
        r = await client.post(
            "/v1/checkins", json=_at(0, at + timedelta(minutes=i)), headers=resident.headers
        )
        assert r.status_code == 201, r.text
    whole = await _stats(
        client, library.id, editor.headers, bucket="hour", tz="UTC",
        since=(at - timedelta(minutes=5)).isoformat(),
    )  # fmt: skip
    assert [(c["residents_checkins"], c["residents_distinct"]) for c in whole] == [(12, 12)]
    for since, until in (
        (at + timedelta(minutes=10), None),  # would hold 7 of 12
        (at - timedelta(minutes=5), at + timedelta(minutes=5)),  # would hold 0..1 of 12
    ):
        params = {"since": since.isoformat()}
        if until is not None:
            params["until"] = until.isoformat()
        cut = await _stats(client, library.id, editor.headers, bucket="hour", tz="UTC", **params)
        assert cut == whole


async def test_the_activity_feed_leaves_out_colleagues_checkins(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    colleague = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Stanmer Park")
    now = datetime.now(UTC)
    r = await client.post("/v1/checkins", json=_at(0, now), headers=worker.headers)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/checkins", json=_at(0, now), headers=resident.headers)
    assert r.status_code == 201, r.text

    async def checkins_seen_by(headers: dict[str, str]) -> set[str]:
        r = await client.get("/v1/activity?kind=checkin&limit=100", headers=headers)
        assert r.status_code == 200, r.text
        return {i["actor"]["kind"] + ":" + i["actor"]["id"] for i in r.json()["items"]}

    mine = f"staff:{worker.id}"
    theirs = f"resident:{resident.id}"
    assert await checkins_seen_by(worker.headers) == {mine, theirs}
    for other in (editor, admin, colleague):
        assert await checkins_seen_by(other.headers) == {theirs}
