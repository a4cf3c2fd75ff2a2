"""End to end in the 202 mode: single fixes → queue → evaluator → rules → outbox → fake push."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.presence import evaluator
from app.rules import service as rules_service
from tests.notifications.fake_push import FakePushService
from tests.presence.helpers import at
from tests.rules.helpers import Town, received, wait_for, walk_past


async def test_a_walk_of_single_fixes_answered_202_delivers_the_offer_once(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await Town(rules_engine, rules_settings, api).setup()
    library = await t.library()
    offer = await t.offer(
        geofence_ids=[str(library)], triggers=["enter", "nearby"], max_per_person=5
    )
    alice = await t.resident(fake_push)
    await t.api.put("/v1/me/preferences", json={"quiet_hours": None}, headers=alice.headers)

    points = walk_past()
    end = datetime.now(UTC) - timedelta(seconds=1)
    for i, (e, n) in enumerate(points):
        lon, lat = at(e, n)
        fix = {
            "id": f"a-{i}",
            "lon": lon,
            "lat": lat,
            "accuracy_m": 8.0,
            "recorded_at": (end - timedelta(seconds=10 * (len(points) - 1 - i))).isoformat(),
        }
        r = await t.api.post("/v1/pings", json={"pings": [fix]}, headers=alice.headers)
        assert r.status_code == 202, r.text
    # nothing is evaluated before the evaluator runs: no event, nothing to push
    assert await t.scalar("SELECT count(*) FROM presence_events") == 0
    assert await t.scalar("SELECT count(*) FROM ping_queue") == len(points)

    stop = asyncio.Event()
    quick = rules_settings.model_copy(update={"ping_evaluator_poll_s": 0.1})
    hook = rules_service.event_hook(quick)
    task = asyncio.create_task(evaluator.run_evaluator(quick, rules_engine, stop, on_events=hook))
    try:

        async def drained() -> bool:
            return int(await t.scalar("SELECT count(*) FROM ping_queue")) == 0

        await wait_for(drained)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)

    assert t.admin is not None
    items = (await t.api.get("/v1/events", headers=t.admin.headers)).json()["items"]
    assert {"nearby", "enter"} <= {e["type"] for e in items}
    assert all(e["device_id"] == str(alice.id) for e in items)
    await t.deliver()
    got = received(fake_push)
    assert fake_push.violations == []
    assert len(got) == 1
    assert got[0]["data"]["offer_id"] == offer["id"]
    assert uuid.UUID(got[0]["id"])
