"""End to end: pings and check-ins through the real API → rules → outbox → worker → fake push."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from tests.notifications.fake_push import FakePushService
from tests.rules.helpers import Town, received, walk_past


async def town(engine: AsyncEngine, settings: Settings, api: httpx.AsyncClient) -> Town:
    return await Town(engine, settings, api).setup()


def offer_decisions(inbox: list[dict[str, Any]], offer_id: str) -> list[str]:
    return [n["decision"] for n in inbox if n["related"].get("offer_id") == offer_id]


async def test_walk_past_library_delivers_exactly_one_offer_and_second_pass_says_cooldown(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    library = await t.library()
    offer = await t.offer(
        geofence_ids=[str(library)], triggers=["enter", "nearby"], cooldown_s=3600,
        max_per_person=5,
    )
    alice = await t.resident(fake_push)
    await t.api.put(
        "/v1/me/preferences", json={"quiet_hours": None}, headers=alice.headers
    )  # whatever the hour of the test run
    batch = await t.walk(alice.headers, walk_past())
    assert {"nearby", "enter"} <= {e["type"] for e in batch["events"]}
    await t.deliver()
    got = received(fake_push)
    assert fake_push.violations == []
    assert len(got) == 1
    push = got[0]
    assert push["kind"] == "offer" and push["title"] == "Tonight: author talk"
    assert push["data"]["offer_id"] == offer["id"]
    assert push["url"] and push["tag"] and push["id"]

    # the second event of the same walk (nearby, then enter) was deduplicated
    inbox = await t.inbox(alice.headers)
    decisions = offer_decisions(inbox, offer["id"])
    assert decisions.count("send") == 1
    assert set(decisions) - {"send"} <= {"suppressed:cooldown"}

    # a second pass within the cooldown: nothing pushed, the inbox says why
    await t.walk(alice.headers, list(reversed(walk_past())), prefix="back")
    await t.deliver()
    assert len(received(fake_push)) == 1
    inbox = await t.inbox(alice.headers)
    decisions = offer_decisions(inbox, offer["id"])
    assert decisions.count("send") == 1
    assert decisions[0] == "suppressed:cooldown"  # newest first

    # staff see the decisions on the events; stats count sent → opened
    assert t.admin is not None
    events = (await t.api.get("/v1/events", headers=t.admin.headers)).json()["items"]
    all_decisions = [d for e in events for d in e["decisions"]]
    assert sum(d["decision"] == "queued" for d in all_decisions) == 1
    assert {d["reason"] for d in all_decisions if d["decision"] == "suppressed"} == {"cooldown"}
    opened = await t.api.post(
        f"/v1/me/notifications/{push['id']}/opened", headers=alice.headers
    )
    assert opened.status_code == 200, opened.text
    stats = (await t.api.get(f"/v1/offers/{offer['id']}/stats", headers=t.admin.headers)).json()
    assert (stats["sent"], stats["opened"], stats["redeemed"]) == (1, 1, 0)
