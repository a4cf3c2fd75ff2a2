"""Lone-working test helpers: a town with an on-call list and push subscriptions, a task visit,
and the ground truth of what was pushed (the notifications and outbox rows)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.safety import service
from app.safety.service import TickResult
from tests.notifications.test_api import subscription_json
from tests.offers.helpers import Town

PARK = (-1.2560, 51.7530)  # the centre of the town's park
LIBRARY = (-1.2577, 51.7520)


@dataclass(frozen=True)
class Push:
    """One notification as the ground truth has it: who, what, how urgent, to how many browsers."""

    to: uuid.UUID
    kind: str
    title: str
    body: str
    url: str | None
    urgency: str
    data: dict[str, Any]
    browsers: int


async def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


async def prepare(client: httpx.AsyncClient, town: Town) -> None:
    """On call: the editor first, then worker2; everyone has one browser subscribed."""
    await ok(
        await client.put(
            "/v1/safety/on-call",
            json={
                "contacts": [
                    {"staff_id": str(town.editor.id), "rank": 1},
                    {"staff_id": str(town.worker2.id), "rank": 2},
                ]
            },
            headers=town.admin.headers,
        )
    )
    for who in (town.admin, town.editor, town.worker, town.worker2):
        await ok(
            await client.post(
                "/v1/push/subscriptions", json=subscription_json(), headers=who.headers
            ),
            201,
        )


async def task_at_park(
    client: httpx.AsyncClient,
    town: Town,
    minutes: int | None = 20,
    place: uuid.UUID | None = None,
    worker: Any = None,
) -> str:
    body: dict[str, Any] = {
        "title": "Inspect the play area",
        "geofence_id": str(place or town.park),
        "assignee_ids": [str((worker or town.worker).id)],
    }
    if minutes is not None:
        body["expected_duration_min"] = minutes
    task = await ok(await client.post("/v1/tasks", json=body, headers=town.editor.headers), 201)
    return str(task["id"])


async def check_in(
    client: httpx.AsyncClient, who: Any, place: uuid.UUID, at: tuple[float, float] = PARK
) -> dict[str, Any]:
    lon, lat = at
    resp = await client.post(
        "/v1/checkins",
        json={"lon": lon, "lat": lat, "accuracy_m": 10, "geofence_id": str(place)},
        headers=who.headers,
    )
    data: dict[str, Any] = await ok(resp, 201)
    return data


async def my_visit(client: httpx.AsyncClient, who: Any) -> dict[str, Any]:
    visits = await ok(await client.get("/v1/me/visits", headers=who.headers))
    assert len(visits) == 1, visits
    visit: dict[str, Any] = visits[0]
    return visit


async def pushes(db: AsyncSession, org: uuid.UUID) -> list[Push]:
    """Every lone-working notification of the organisation, oldest first."""
    rows = (
        await db.execute(
            text(
                "SELECT n.staff_user_id, n.kind, n.title, n.body, n.url, n.urgency, n.payload, "
                "(SELECT count(*) FROM outbox o "
                "WHERE o.channel = 'webpush' AND o.notification_id = n.id) AS browsers "
                "FROM notifications n WHERE n.organisation_id = :org AND n.kind LIKE 'safety.%' "
                "ORDER BY n.created_at, n.staff_user_id"
            ),
            {"org": org},
        )
    ).all()
    return [
        Push(
            r.staff_user_id,
            r.kind,
            r.title,
            r.body,
            r.url,
            r.urgency,
            orjson.loads(r.payload).get("data", {}),
            r.browsers,
        )
        for r in rows
    ]


async def tick(db: AsyncSession, settings: Settings, now: datetime) -> TickResult:
    """One run of the scheduled job at `now` (the controllable clock), committed."""
    result = await service.tick(db, settings, now)
    await db.commit()
    return result


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)
