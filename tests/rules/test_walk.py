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
        geofence_ids=[str(library)],
        triggers=["enter", "nearby"],
        cooldown_s=3600,
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
    assert push["kind"] == "offer"
    assert push["title"] == "Tonight: author talk"
    assert push["data"]["offer_id"] == offer["id"]
    assert push["url"]
    assert push["tag"]
    assert push["id"]

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
    opened = await t.api.post(f"/v1/me/notifications/{push['id']}/opened", headers=alice.headers)
    assert opened.status_code == 200, opened.text
    stats = (await t.api.get(f"/v1/offers/{offer['id']}/stats", headers=t.admin.headers)).json()
    assert (stats["sent"], stats["opened"], stats["redeemed"]) == (1, 1, 0)


def _hhmm(d: datetime) -> str:
    return d.strftime("%H:%M")


async def test_quiet_hours_drop_or_defer_then_deliver_at_the_end(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    near = await t.library(0.0, 0.0, name="Near Library")
    far = await t.library(1000.0, 0.0, name="Far Library")
    dropped = await t.offer(geofence_ids=[str(near)], triggers=["enter"], title="Dropped")
    deferred = await t.offer(
        geofence_ids=[str(far)], triggers=["enter"], title="Deferred", quiet_hours_policy="defer"
    )
    alice = await t.resident(fake_push)
    from zoneinfo import ZoneInfo

    local = datetime.now(ZoneInfo("Europe/London"))
    quiet = {"start": _hhmm(local - timedelta(hours=1)), "end": _hhmm(local + timedelta(hours=1))}
    r = await t.api.put("/v1/me/preferences", json={"quiet_hours": quiet}, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours"]["start"].startswith(quiet["start"])
    await t.walk(alice.headers, walk_past(stop=1200.0, step=20.0), step_s=5.0)
    await t.deliver()
    assert received(fake_push) == []  # nothing during quiet hours
    inbox = await t.inbox(alice.headers)
    assert offer_decisions(inbox, dropped["id"]) == ["suppressed:quiet_hours"]
    assert offer_decisions(inbox, deferred["id"]) == ["send"]
    waiting = await t.scalar("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'")
    assert waiting > datetime.now(UTC) + timedelta(minutes=50)
    # the end of quiet hours arrives: the deferred one is delivered, once
    await t.scalar("UPDATE outbox SET next_attempt_at = now() RETURNING 1")
    await t.deliver()
    got = received(fake_push)
    assert [g["title"] for g in got] == ["Deferred"]


async def test_daily_budget_holds_across_places_and_opt_out_suppresses(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    ids = [await t.library(600.0 * i, 0.0, name=f"Library {i}") for i in range(4)]
    offers = [
        await t.offer(geofence_ids=[str(g)], triggers=["enter"], title=f"Offer {i}")
        for i, g in enumerate(ids)
    ]
    pool = await t.library(3000.0, 0.0, name="Pool", category="swimming_pool")
    swim = await t.offer(geofence_ids=[str(pool)], triggers=["enter"], title="Swim")
    alice = await t.resident(fake_push)
    r = await t.api.put(
        "/v1/me/preferences",
        json={"quiet_hours": None, "categories_opted_out": ["swimming_pool"]},
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["max_per_day"] == 3  # the resident default
    await t.walk(alice.headers, walk_past(stop=3200.0, step=20.0), step_s=2.0)
    await t.deliver()
    assert sorted(g["title"] for g in received(fake_push)) == ["Offer 0", "Offer 1", "Offer 2"]
    inbox = await t.inbox(alice.headers)
    assert offer_decisions(inbox, offers[3]["id"]) == ["suppressed:budget"]
    assert offer_decisions(inbox, swim["id"]) == ["suppressed:opted_out"]


async def test_implausible_checkin_is_recorded_but_pushes_nothing(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    from tests.presence.helpers import at

    t = await town(rules_engine, rules_settings, api)
    library = await t.library()
    elsewhere = await t.library(0.0, 20_000.0, name="Far away")
    offer = await t.offer(geofence_ids=[str(library)], triggers=["checkin"])
    alice = await t.resident(fake_push)
    await t.api.put("/v1/me/preferences", json={"quiet_hours": None}, headers=alice.headers)
    now = datetime.now(UTC)
    for place, (e, n), when in (
        (elsewhere, (0.0, 20_000.0), now - timedelta(seconds=60)),
        (library, (0.0, 0.0), now),
    ):
        lon, lat = at(e, n)
        r = await t.api.post(
            "/v1/checkins",
            json={
                "lon": lon,
                "lat": lat,
                "accuracy_m": 10,
                "geofence_id": str(place),
                "recorded_at": when.isoformat(),
            },
            headers=alice.headers,
        )
        assert r.status_code == 201, r.text
    assert r.json()["notifications_queued"] == []
    await t.deliver()
    assert received(fake_push) == []
    inbox = await t.inbox(alice.headers)
    assert offer_decisions(inbox, offer["id"]) == ["suppressed:implausible_jump"]
