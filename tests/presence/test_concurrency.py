"""Two copies of one batch racing (a client retry while the first is in flight): stored once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.presence import service
from app.presence.models import SubjectKind
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import T0, at, create_circle


async def test_concurrent_identical_batches_store_once_and_fire_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as setup, setup.begin():
        org = await create_organisation(setup)
        await create_circle(setup, org.id, 0, 0, 40, dwell_s=60)
        res = await create_resident(setup, org)
    org_id, device_id = org.id, res.id
    pings = []
    for i in range(50):
        lon, lat = at(0 if i < 30 else 1000, 0)
        pings.append(service.PingInput(f"r{i}", lon, lat, T0 + timedelta(seconds=10 * i), 10.0))
    subject = service.Subject(SubjectKind.device, device_id, org_id)
    now = datetime.now(UTC)

    async def attempt() -> service.BatchResult:
        async with AsyncSession(engine) as s, s.begin():
            return await service.ingest_ping_batch(s, settings, subject, pings, now=now)

    try:
        first, second = await asyncio.gather(attempt(), attempt())
        assert sorted([first.accepted, second.accepted]) == [0, 50]
        assert sorted([first.duplicates, second.duplicates]) == [0, 50]
        assert [e["type"] for e in first.events + second.events] == [
            "nearby",
            "enter",
            "dwell",
            "exit",
        ]
        async with AsyncSession(engine) as s:
            n = await s.scalar(
                text("SELECT count(*) FROM pings WHERE subject_id = :s"), {"s": device_id}
            )
            assert n == 50
    finally:
        async with AsyncSession(engine) as s, s.begin():
            await service.erase_subject(s, device_id)
            await s.execute(text("DELETE FROM organisations WHERE id = :o"), {"o": org_id})
