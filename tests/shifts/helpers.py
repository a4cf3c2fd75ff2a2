"""Shift windows around now, fixes to send, and what a subject has stored anywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.shifts.models import StaffPeriod
from tests.factories import Staff
from tests.presence.helpers import at


async def set_shift(client: httpx.AsyncClient, worker: Staff, start_h: float, end_h: float) -> None:
    """The worker's shift window, in UTC, from now + start_h to now + end_h (every day)."""
    now = datetime.now(UTC)
    body = {
        "start": f"{now + timedelta(hours=start_h):%H:%M}",
        "end": f"{now + timedelta(hours=end_h):%H:%M}",
        "time_zone": "UTC",
    }
    r = await client.put(f"/v1/staff/{worker.id}/shift", json=body, headers=worker.headers)
    assert r.status_code == 200, r.text


async def off_shift(client: httpx.AsyncClient, worker: Staff) -> None:
    """A shift from two to three hours from now: off shift now and all of the last hour."""
    await set_shift(client, worker, 2, 3)


async def add_period(
    db: AsyncSession,
    worker: Staff,
    kind: str,
    started: datetime,
    *,
    ends_by: datetime | None = None,
    ended: datetime | None = None,
) -> uuid.UUID:
    row = StaffPeriod(
        organisation_id=worker.organisation_id,
        staff_user_id=worker.id,
        kind=kind,
        started_at=started,
        ends_by=ends_by,
        ended_at=ended,
        end_reason="worker" if ended else None,
    )
    db.add(row)
    await db.flush()
    return row.id


def fix(i: int, ago_s: float, east_m: float = 0.0, prefix: str = "f") -> dict[str, Any]:
    lon, lat = at(east_m, 0.0)
    t = datetime.now(UTC) - timedelta(seconds=ago_s)
    return {
        "id": f"{prefix}{i}",
        "lon": round(lon, 6),
        "lat": round(lat, 6),
        "accuracy_m": 8,
        "recorded_at": t.isoformat(),
    }


STORED = {
    "pings": "SELECT count(*) FROM pings WHERE subject_id = :s",
    "ping_queue": "SELECT count(*) FROM ping_queue WHERE subject_id = :s",
    "presence": "SELECT count(*) FROM presence WHERE subject_id = :s",
    "presence_subjects": "SELECT count(*) FROM presence_subjects WHERE subject_id = :s",
    "events": "SELECT count(*) FROM presence_events WHERE staff_user_id = :s OR device_id = :s",
    "checkins": "SELECT count(*) FROM checkins WHERE staff_user_id = :s OR device_id = :s",
    "staff_track_points": "SELECT count(*) FROM staff_track_points WHERE staff_user_id = :s",
}


async def stored(db: AsyncSession, subject_id: uuid.UUID) -> dict[str, int]:
    """How many rows about the subject each location table holds."""
    out = {}
    for name, sql in STORED.items():
        out[name] = int((await db.execute(text(sql), {"s": subject_id})).scalar_one())
    return out


NOTHING = dict.fromkeys(STORED, 0)
