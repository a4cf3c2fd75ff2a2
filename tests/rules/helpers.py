"""A small committed world for end-to-end rule tests: an organisation, places, people, pings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.models import Role
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.notifications.worker import DeliveryWorker
from tests.factories import Resident, Staff, create_organisation, create_resident, create_staff
from tests.notifications.fake_push import FakePushService
from tests.presence.helpers import at, create_circle, create_rectangle

GUARD_S = 60.0


class Town:
    def __init__(self, engine: AsyncEngine, settings: Settings, api: httpx.AsyncClient) -> None:
        self.engine = engine
        self.settings = settings
        self.api = api
        self.sessionmaker = create_sessionmaker(engine)
        self.org: Any = None
        self.org_id: uuid.UUID | None = None
        self.admin: Staff | None = None

    async def setup(self) -> Town:
        async with self.sessionmaker() as s, s.begin():
            self.org = await create_organisation(s)
            self.org_id = self.org.id
            self.admin = await create_staff(s, self.settings, self.org, Role.admin)
        return self

    async def library(self, east: float = 0.0, north: float = 0.0, **kw: Any) -> uuid.UUID:
        assert self.org_id is not None
        async with self.sessionmaker() as s, s.begin():
            return await create_circle(s, self.org_id, east, north, 30.0, **kw)

    async def park(self, west: float, south: float, east: float, north: float) -> uuid.UUID:
        assert self.org_id is not None
        async with self.sessionmaker() as s, s.begin():
            return await create_rectangle(s, self.org_id, west, south, east, north)

    async def resident(self, fake: FakePushService | None = None) -> Resident:
        async with self.sessionmaker() as s, s.begin():
            r = await create_resident(s, self.org)
        put = await self.api.put(
            "/v1/me/background-location", json={"enabled": True}, headers=r.headers
        )
        assert put.status_code == 200, put.text
        if fake is not None:
            await self.subscribe(r.headers, fake)
        return r

    async def worker(self, fake: FakePushService | None = None) -> Staff:
        async with self.sessionmaker() as s, s.begin():
            w = await create_staff(s, self.settings, self.org, Role.field_worker)
        if fake is not None:
            await self.subscribe(w.headers, fake)
        return w

    async def subscribe(self, headers: dict[str, str], fake: FakePushService) -> None:
        sub = fake.subscribe()
        r = await self.api.post("/v1/push/subscriptions", json=sub.as_json(), headers=headers)
        assert r.status_code == 201, r.text

    async def offer(self, **kw: Any) -> dict[str, Any]:
        assert self.admin is not None
        body = {"title": "Tonight: author talk", "body": "7pm, free entry", "status": "active"}
        body.update(kw)
        r = await self.api.post("/v1/offers", json=body, headers=self.admin.headers)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def task(self, geofence_id: uuid.UUID, assignees: list[uuid.UUID]) -> dict[str, Any]:
        assert self.admin is not None
        body = {
            "title": "Inspect the play area",
            "geofence_id": str(geofence_id),
            "assignee_ids": [str(a) for a in assignees],
        }
        r = await self.api.post("/v1/tasks", json=body, headers=self.admin.headers)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def walk(
        self,
        headers: dict[str, str],
        points: list[tuple[float, float]],
        *,
        step_s: float = 10.0,
        end: datetime | None = None,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        """Send one batch of fixes along `points` (local metres), the last one at `end`."""
        end = end or datetime.now(UTC) - timedelta(seconds=1)
        prefix = prefix or uuid.uuid4().hex[:8]
        pings = []
        for i, (e, n) in enumerate(points):
            lon, lat = at(e, n)
            t = end - timedelta(seconds=step_s * (len(points) - 1 - i))
            pings.append(
                {
                    "id": f"{prefix}-{i}",
                    "lon": lon,
                    "lat": lat,
                    "recorded_at": t.isoformat(),
                    "accuracy_m": 8.0,
                }
            )
        r = await self.api.post("/v1/pings?mode=sync", json={"pings": pings}, headers=headers)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def inbox(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        r = await self.api.get("/v1/me/notifications", headers=headers)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.begin() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def deliver(self) -> None:
        """Run a delivery worker until nothing due is pending."""
        w = DeliveryWorker(self.settings, self.engine)
        task = asyncio.create_task(w.run(listen=True))
        try:
            await wait_for(self._settled)
        finally:
            w.stop()
            await task

    async def _settled(self) -> bool:
        due = await self.scalar(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= now()"
        )
        return int(due) == 0


def walk_past(
    north: float = 0.0, start: float = -200.0, stop: float = 200.0, step: float = 14.0
) -> list[tuple[float, float]]:
    out = []
    e = start
    while e <= stop:
        out.append((e, north))
        e += step
    return out


def received(fake: FakePushService) -> list[dict[str, Any]]:
    return [orjson.loads(r.plaintext) for r in fake.received if r.answered < 300]


async def wait_for(check: Callable[[], Awaitable[bool]], guard_s: float = GUARD_S) -> None:
    async with asyncio.timeout(guard_s):
        while not await check():
            await asyncio.sleep(0.05)
