from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from tests.factories import Resident
from tests.presence.helpers import T0, P, create_circle, send


async def test_enter_dwell_exit_round_trip(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    lib = await create_circle(db, org.id, 0, 0, 40, dwell_s=60)
    fixes = [P(f"p{i}", 0, 0, T0 + timedelta(seconds=30 * i)) for i in range(4)]
    fixes.append(P("p9", 300, 0, T0 + timedelta(seconds=200)))
    body = await send(client, resident.headers, [f.ping() for f in fixes])
    assert body["accepted"] == 5
    assert [(e["type"], e["geofence_id"]) for e in body["events"]] == [
        ("enter", str(lib)),
        ("dwell", str(lib)),
        ("exit", str(lib)),
    ]
    again = await send(client, resident.headers, [f.ping() for f in fixes])
    assert again == {"accepted": 0, "duplicates": 5, "rejected": [], "events": [], "flagged": []}
