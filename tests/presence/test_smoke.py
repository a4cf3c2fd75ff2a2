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
    fixes.append(P("p8", 300, 0, T0 + timedelta(seconds=200)))
    fixes.append(P("p9", 320, 0, T0 + timedelta(seconds=210)))
    body = await send(client, resident.headers, [f.ping() for f in fixes])
    assert body["accepted"] == 6
    assert [(e["type"], e["geofence_id"], e["ping_id"]) for e in body["events"]] == [
        ("nearby", str(lib), "p0"),
        ("enter", str(lib), "p1"),
        ("dwell", str(lib), "p2"),
        ("exit", str(lib), "p9"),
    ]
    again = await send(client, resident.headers, [f.ping() for f in fixes])
    assert again == {"accepted": 0, "duplicates": 6, "rejected": [], "events": [], "flagged": []}
