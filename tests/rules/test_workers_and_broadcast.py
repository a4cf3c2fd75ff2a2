"""End to end for field workers (tasks, shifts, pool on check-in) and place broadcasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.rules.models import Reason
from app.rules.reasons import STAFF
from tests.notifications.fake_push import FakePushService
from tests.presence.helpers import at
from tests.rules.helpers import Town, received, walk_past


async def town(engine: AsyncEngine, settings: Settings, api: httpx.AsyncClient) -> Town:
    return await Town(engine, settings, api).setup()


def _hhmm(d: datetime) -> str:
    return d.strftime("%H:%M")


async def test_worker_driving_past_park_gets_assigned_task_only_on_shift(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    park = await t.park(0.0, -50.0, 100.0, 50.0)
    on = await t.worker(fake_push)
    off = await t.worker(fake_push)
    task_on = await t.task(park, [on.id])
    task_off = await t.task(park, [off.id])
    london = datetime.now(ZoneInfo("Europe/London"))
    assert t.admin is not None
    # the admin sets one shift around now, and one that ended an hour ago
    r = await t.api.put(
        f"/v1/staff/{off.id}/shift",
        json={
            "start": _hhmm(london - timedelta(hours=3)),
            "end": _hhmm(london - timedelta(hours=1)),
            "time_zone": "Europe/London",
        },
        headers=t.admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["on_shift_now"] is False
    # the worker sets their own
    r = await t.api.put(
        "/v1/me/preferences",
        json={
            "on_shift": {
                "start": _hhmm(london - timedelta(hours=1)),
                "end": _hhmm(london + timedelta(hours=1)),
            }
        },
        headers=on.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["on_shift_now"] is True
    drive = walk_past(start=-450.0, stop=450.0, step=100.0)
    await t.walk(on.headers, drive, step_s=10.0)
    # off shift, the worker is not located at all (docs/tasks.md, "Shifts"): their fixes are
    # refused, so nothing about them is matched, held back or pushed
    r = await t.api.post(
        "/v1/pings?mode=sync",
        json={"pings": [{"id": "off-1", "lon": -1.5, "lat": 53.8, "accuracy_m": 8.0,
                         "recorded_at": datetime.now(UTC).isoformat()}]},
        headers=off.headers,
    )  # fmt: skip
    assert (r.status_code, r.json()["type"].split("/")[-1]) == (409, "off-shift")
    await t.deliver()
    got = received(fake_push)
    assert [(g["kind"], g["data"]["task_id"]) for g in got] == [("task", task_on["id"])]
    assert await t.inbox(off.headers) == []
    # the off-shift worker starts an ad-hoc shift: located, and told about their task, at once
    r = await t.api.post("/v1/me/shift/start", headers=off.headers)
    assert r.status_code == 201, r.text
    async with rules_engine.begin() as conn:  # started five minutes ago: the whole drive is in it
        # on UTC timestamps: Citus refuses the STABLE `timestamptz - interval` on a column in an
        # UPDATE (as tests/security/test_retention.py ages rows)
        await conn.execute(
            text("UPDATE staff_periods SET started_at = "
                 "(started_at AT TIME ZONE 'UTC' - interval '5 minutes') AT TIME ZONE 'UTC' "
                 "WHERE staff_user_id = :s"),
            {"s": off.id},
        )  # fmt: skip
    await t.walk(off.headers, drive, step_s=10.0)
    await t.deliver()
    got = received(fake_push)
    assert sorted(g["data"]["task_id"] for g in got) == sorted([task_on["id"], task_off["id"]])
    assert {n["decision"] for n in await t.inbox(off.headers)} == {"send"}
    # another worker cannot set someone else's shift
    r = await t.api.put(
        f"/v1/staff/{off.id}/shift", json={"start": "08:00", "end": "16:00"}, headers=on.headers
    )
    assert r.status_code == 403


async def test_checking_in_at_depot_hands_pool_tasks_by_push(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    depot = await t.library(0.0, 0.0, name="Depot", category="depot")
    other = await t.library(5000.0, 0.0, name="Elsewhere", category="depot")
    worker = await t.worker(fake_push)
    pool = [await t.task(depot, []) for _ in range(2)]
    await t.task(other, [])  # a pool task at another place: not handed over
    lon, lat = at(0.0, 0.0)
    r = await t.api.post(
        "/v1/checkins",
        json={"lon": lon, "lat": lat, "accuracy_m": 10, "geofence_id": str(depot)},
        headers=worker.headers,
    )
    assert r.status_code == 201, r.text
    queued = r.json()["notifications_queued"]
    assert [q["kind"] for q in queued] == ["task", "task"]
    await t.deliver()
    got = received(fake_push)
    assert sorted(g["data"]["task_id"] for g in got) == sorted(p["id"] for p in pool)
    assert {g["id"] for g in got} == {q["id"] for q in queued}


async def test_broadcast_reaches_exactly_the_people_present(
    rules_engine: AsyncEngine,
    rules_settings: Settings,
    api: httpx.AsyncClient,
    fake_push: FakePushService,
) -> None:
    t = await town(rules_engine, rules_settings, api)
    library = await t.library()
    inside = await t.resident(fake_push)
    passed_by_long_ago_far = await t.resident(fake_push)
    checked_in = await t.resident(fake_push)
    opted_out = await t.resident(fake_push)
    for who in (inside, checked_in, opted_out, passed_by_long_ago_far):
        await t.api.put("/v1/me/preferences", json={"quiet_hours": None}, headers=who.headers)
    await t.api.put(
        "/v1/me/preferences", json={"categories_opted_out": ["library"]}, headers=opted_out.headers
    )
    await t.walk(inside.headers, [(-100.0, 0.0), (-50.0, 0.0), (0.0, 0.0), (5.0, 0.0)])
    await t.walk(opted_out.headers, [(-100.0, 0.0), (-50.0, 0.0), (0.0, 0.0), (5.0, 0.0)])
    await t.walk(passed_by_long_ago_far.headers, [(-900.0, 0.0), (-800.0, 0.0)])
    lon, lat = at(0.0, 0.0)
    r = await t.api.post(
        "/v1/checkins",
        json={"lon": lon, "lat": lat, "accuracy_m": 10, "geofence_id": str(library)},
        headers=checked_in.headers,
    )
    assert r.status_code == 201, r.text
    assert t.admin is not None
    r = await t.api.post(
        f"/v1/geofences/{library}/broadcast",
        json={"title": "Closing early today", "body": "We close at 4pm."},
        headers=t.admin.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["recipients"], r.json()["queued"]) == (3, 2)
    assert r.json()["suppressed"] == {"opted_out": 1}
    assert r.json()["explanations"] == {"opted_out": STAFF[Reason.opted_out]}
    assert r.json()["quiet_hours_end"] is None  # nobody was held back for quiet hours
    await t.deliver()
    assert sorted(g["title"] for g in received(fake_push)) == ["Closing early today"] * 2
    # safety-critical: must be marked, and then reaches the opted-out person too
    r = await t.api.post(
        f"/v1/geofences/{library}/broadcast",
        json={"title": "Evacuate now", "safety_critical": True},
        headers=t.admin.headers,
    )
    assert (r.json()["queued"], r.json()["suppressed"]) == (3, {})
    await t.deliver()
    assert sum(g["title"] == "Evacuate now" for g in received(fake_push)) == 3
    inbox = await t.inbox(opted_out.headers)
    assert [n["decision"] for n in inbox if n["kind"] == "broadcast"] == [
        "send",
        "suppressed:opted_out",
    ]
    # residents and field workers may not broadcast
    r = await t.api.post(
        f"/v1/geofences/{library}/broadcast", json={"title": "x"}, headers=inside.headers
    )
    assert r.status_code == 403
