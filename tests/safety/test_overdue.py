"""Overdue visits, "I need help" and the escalation ladder, driven by the scheduled job's clock
(`service.tick(now)` with chosen times), against the ground truth of the notifications and
outbox rows written (who, what, how urgent) and the audit log.

The town's on-call list: the editor (rank 1), then worker2 (rank 2); past it, the admins.
Settings: grace 600 s, alarm grace 600 s, ladder [120, 300, 600] s (the defaults).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.safety import service
from tests.notifications.test_api import subscription_json
from tests.offers.helpers import Town
from tests.presence.helpers import P, create_circle, send
from tests.safety.helpers import (
    LIBRARY,
    Push,
    check_in,
    my_visit,
    ok,
    parse,
    prepare,
    pushes,
    task_at_park,
    tick,
)

S = timedelta(seconds=1)


def prompt(town: Town, visit: dict[str, object], due: datetime) -> Push:
    return Push(
        town.worker.id,
        "safety.prompt",
        "Are you OK? Tap to extend",
        f"Your visit at Town Park was due to end at {due:%H:%M} UTC. "
        "Tap to extend it by 30 minutes, or check out.",
        f"/app/#extend={visit['id']}",
        "high",
        {"visit_id": visit["id"], "action": "extend", "minutes": 30},
        1,
    )


def alarm(to: object, alert: dict[str, object], seen: datetime, level: int, what: str) -> Push:
    return Push(
        to,  # type: ignore[arg-type]
        "safety.alert",
        f"URGENT: Test field_worker {what}",
        f"Last known: Town Park at {seen:%H:%M} UTC. Open the console to acknowledge.",
        f"/console#alerts/{alert['id']}",
        "high",
        {
            "alert_id": alert["id"],
            "worker_id": alert["worker_id"],
            "alert_kind": alert["kind"],
            "place": "Town Park",
            "last_seen_at": seen.isoformat(),
            "level": level,
        },
        1,
    )


async def audit(db: AsyncSession, org: object) -> list[tuple[str, object]]:
    rows = await db.execute(
        text(
            "SELECT action, actor_id FROM audit_log WHERE organisation_id = :o "
            "AND action LIKE 'safety.%' ORDER BY at, action"
        ),
        {"o": org},
    )
    return [(r.action, r.actor_id) for r in rows]


async def test_an_overrun_visit_prompts_then_alarms_then_escalates_until_acknowledged(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    checkin = await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    started, due = parse(visit["started_at"]), parse(visit["due_at"])
    assert (visit["expected_min"], visit["expected_from"], visit["started_by"]) == (
        20,
        "task",
        "checkin",
    )
    assert started == parse(checkin["checkin"]["created_at"]) or started <= datetime.now(UTC)
    assert due == started + timedelta(minutes=20)

    # within the grace: nothing
    r = await tick(db, settings, due + timedelta(seconds=600) - S)
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])
    assert await pushes(db, town.org_id) == []

    # expected time + grace: the worker, and only the worker, is asked
    t_prompt = due + timedelta(seconds=600)
    r = await tick(db, settings, t_prompt)
    assert [str(v) for v in r.prompts] == [visit["id"]]
    assert await pushes(db, town.org_id) == [prompt(town, visit, due)]
    # the same moment again (another replica, a restart): nothing more
    r = await tick(db, settings, t_prompt)
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])

    # second grace: the on-call list's first rank gets the urgent push
    assert (await tick(db, settings, t_prompt + timedelta(seconds=600) - S)).alarms == []
    t_alarm = t_prompt + timedelta(seconds=600)
    r = await tick(db, settings, t_alarm)
    assert len(r.alarms) == 1
    [alert] = await ok(await client.get("/v1/safety/alerts", headers=town.editor.headers))
    assert alert["id"] == str(r.alarms[0])
    assert alert["kind"] == "overdue"
    assert alert["visit_id"] == visit["id"]
    assert alert["place_name"] == "Town Park"
    assert alert["worker_name"] == "Test field_worker"
    # no fix since the check-in: the last known time is the visit's start
    assert parse(alert["last_seen_at"]) == started
    assert parse(alert["next_send_at"]) == t_alarm + timedelta(seconds=120)
    seen = started
    after_prompt = [prompt(town, visit, due)]
    rung0 = [alarm(town.editor.id, alert, seen, 0, "has not checked in")]
    assert await pushes(db, town.org_id) == after_prompt + rung0

    # the ladder: +120 s → ranks 1-2; +300 s more → ranks 1-2 and the admins
    assert (await tick(db, settings, t_alarm + timedelta(seconds=120) - S)).resends == []
    t1 = t_alarm + timedelta(seconds=120)
    assert len((await tick(db, settings, t1)).resends) == 1
    rung1 = sorted(
        [alarm(p, alert, seen, 1, "has not checked in") for p in (town.editor.id, town.worker2.id)],
        key=lambda p: str(p.to),
    )
    got = await pushes(db, town.org_id)
    assert got[:2] == after_prompt + rung0
    assert sorted(got[2:], key=lambda p: str(p.to)) == rung1
    t2 = t1 + timedelta(seconds=300)
    assert len((await tick(db, settings, t2)).resends) == 1
    got = await pushes(db, town.org_id)
    rung2 = sorted(
        [
            alarm(p, alert, seen, 2, "has not checked in")
            for p in (town.editor.id, town.worker2.id, town.admin.id)
        ],
        key=lambda p: str(p.to),
    )
    assert sorted(got[4:], key=lambda p: str(p.to)) == rung2
    assert len(got) == 7

    # worker2 (on call) acknowledges: the re-sends stop for good
    acked = await ok(
        await client.post(
            f"/v1/safety/alerts/{alert['id']}/acknowledge",
            json={"note": "Phoned her: fine, signal lost"},
            headers=town.worker2.headers,
        )
    )
    assert acked["acknowledged_by"] == str(town.worker2.id)
    assert acked["acknowledged_at"] is not None
    assert acked["next_send_at"] is None
    r = await tick(db, settings, t2 + timedelta(days=1))
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])
    assert len(await pushes(db, town.org_id)) == 7
    assert await ok(await client.get("/v1/safety/alerts", headers=town.editor.headers)) == []
    assert await audit(db, town.org_id) == [
        ("safety.on_call.update", town.admin.id),
        ("safety.visit.prompt", None),
        ("safety.alert.raise", None),
        ("safety.alert.resend", None),
        ("safety.alert.resend", None),
        ("safety.alert.acknowledge", town.worker2.id),
    ]
    entry = (
        await db.execute(
            text(
                "SELECT details, actor_email FROM audit_log "
                "WHERE action = 'safety.alert.acknowledge' AND entity_id = :a"
            ),
            {"a": alert["id"]},
        )
    ).one()
    assert entry.details["acknowledged_at"] == acked["acknowledged_at"].replace("Z", "+00:00")
    assert entry.details["note"] == "Phoned her: fine, signal lost"
    assert entry.actor_email == town.worker2.email


async def test_extending_from_the_prompt_postpones_the_alarm(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    due = parse(visit["due_at"])
    t_prompt = due + timedelta(seconds=600)
    assert len((await tick(db, settings, t_prompt)).prompts) == 1

    # the tap on the prompt: 30 minutes more from the due time (it is later than now)
    extended = await ok(
        await client.post(
            f"/v1/me/visits/{visit['id']}/extend", json={"minutes": 30}, headers=town.worker.headers
        )
    )
    new_due = due + timedelta(minutes=30)
    assert parse(extended["due_at"]) == new_due
    assert extended["prompted_at"] is None
    assert extended["extended_count"] == 1

    # when the alarm would have gone off: nothing
    r = await tick(db, settings, t_prompt + timedelta(seconds=600))
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])
    # the new time + grace: asked again; no answer → the alarm
    r = await tick(db, settings, new_due + timedelta(seconds=600))
    assert len(r.prompts) == 1
    r = await tick(db, settings, new_due + timedelta(seconds=1200))
    assert len(r.alarms) == 1
    kinds = [(p.to, p.kind) for p in await pushes(db, town.org_id)]
    assert kinds == [
        (town.worker.id, "safety.prompt"),
        (town.worker.id, "safety.prompt"),
        (town.editor.id, "safety.alert"),
    ]


async def test_checking_out_ends_the_visit_and_nothing_fires(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    out = await ok(
        await client.post(f"/v1/me/visits/{visit['id']}/check-out", headers=town.worker.headers)
    )
    assert (out["state"], out["end_reason"]) == ("ended", "checkout")
    r = await tick(db, settings, parse(visit["due_at"]) + timedelta(hours=5))
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])
    assert await pushes(db, town.org_id) == []
    assert await ok(await client.get("/v1/me/visits", headers=town.worker.headers)) == []


async def test_i_need_help_alerts_at_once_and_climbs_the_same_ladder(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    before = datetime.now(UTC)
    alert = await ok(
        await client.post(
            "/v1/me/help",
            json={"note": "Aggressive dog at the gate", "lon": -1.2561, "lat": 51.7531},
            headers=town.worker.headers,
        ),
        201,
    )
    seen = parse(alert["last_seen_at"])
    assert before <= seen <= datetime.now(UTC)
    assert (alert["kind"], alert["place_name"], alert["note"]) == (
        "help",
        "Town Park",
        "Aggressive dog at the gate",
    )
    assert (alert["last_lon"], alert["last_lat"]) == (-1.2561, 51.7531)
    # at once, before any tick: the first rank
    assert await pushes(db, town.org_id) == [alarm(town.editor.id, alert, seen, 0, "needs help")]
    r = await tick(db, settings, parse(alert["raised_at"]) + timedelta(seconds=120))
    assert [str(a) for a in r.resends] == [alert["id"]]
    assert {p.to for p in (await pushes(db, town.org_id))[1:]} == {town.editor.id, town.worker2.id}
    # the worker cannot acknowledge their own alert; the editor can
    own = await client.post(
        f"/v1/safety/alerts/{alert['id']}/acknowledge", json={}, headers=town.worker.headers
    )
    assert own.status_code == 403
    await ok(
        await client.post(
            f"/v1/safety/alerts/{alert['id']}/acknowledge", json={}, headers=town.editor.headers
        )
    )
    r = await tick(db, settings, parse(alert["raised_at"]) + timedelta(hours=1))
    assert r.resends == []
    assert ("safety.help", town.worker.id) in await audit(db, town.org_id)


async def test_without_an_on_call_list_the_admins_are_called(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    for who in (town.admin, town.editor, town.worker):
        await ok(
            await client.post(
                "/v1/push/subscriptions",
                json=subscription_json(),
                headers=who.headers,
            ),
            201,
        )
    alert = await ok(await client.post("/v1/me/help", json={}, headers=town.worker.headers), 201)
    assert alert["place_name"] is None
    assert alert["last_seen_at"] is None
    assert [(p.to, p.title) for p in await pushes(db, town.org_id)] == [
        (town.admin.id, "URGENT: Test field_worker needs help")
    ]
    assert (await pushes(db, town.org_id))[0].body == (
        "Last known: an unknown place. Open the console to acknowledge."
    )


async def test_the_phone_going_dead_still_raises_the_alarm_from_the_server_clock(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    """The worker enters by pings alone, then the phone sends nothing ever again."""
    await prepare(client, town)
    place = await create_circle(db, town.org_id, 0, 0, 50, name="Allotments", category="park")
    await db.commit()
    await task_at_park(client, town, minutes=15, place=place)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    body = await send(
        client,
        town.worker.headers,
        [P(f"in{i}", 0, 0, t0 + timedelta(seconds=10 * i), 10).ping() for i in range(4)],
    )
    enters = [e for e in body["events"] if e["type"] == "enter"]
    assert len(enters) == 1
    visit = await my_visit(client, town.worker)
    assert visit["started_by"] == "presence"
    last_fix = t0 + timedelta(seconds=30)
    due = parse(visit["due_at"])
    # not one request from the phone from here on: only the server's clock
    r = await tick(db, settings, due + timedelta(seconds=600))
    assert len(r.prompts) == 1
    r = await tick(db, settings, due + timedelta(seconds=1200))
    assert len(r.alarms) == 1
    [alert] = await ok(await client.get("/v1/safety/alerts", headers=town.admin.headers))
    assert alert["place_name"] == "Allotments"
    assert parse(alert["last_seen_at"]) == last_fix
    assert alert["last_lon"] is not None
    [p, a] = await pushes(db, town.org_id)
    assert (p.to, p.kind, a.to, a.kind) == (
        town.worker.id,
        "safety.prompt",
        town.editor.id,
        "safety.alert",
    )
    assert (
        a.body
        == f"Last known: Allotments at {last_fix:%H:%M} UTC. Open the console to acknowledge."
    )


async def test_one_outlier_neither_ends_the_visit_nor_raises_an_alarm_two_fixes_out_do_end_it(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    place = await create_circle(db, town.org_id, 0, 0, 50, name="Allotments", category="park")
    await db.commit()
    await task_at_park(client, town, minutes=15, place=place)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def t(s: int) -> datetime:
        return t0 + timedelta(seconds=s)

    await send(
        client, town.worker.headers, [P(f"in{i}", 0, 0, t(10 * i), 10).ping() for i in range(4)]
    )
    visit = await my_visit(client, town.worker)
    # one fix 80 m east (30 m beyond the edge), then back inside
    body = await send(
        client,
        town.worker.headers,
        [P("outlier", 80, 0, t(50), 10).ping(), P("back", 0, 0, t(60), 10).ping()],
    )
    assert [e["type"] for e in body["events"] if e["type"] == "exit"] == []
    still = await my_visit(client, town.worker)
    assert (still["id"], still["state"], still["due_at"]) == (
        visit["id"],
        "active",
        visit["due_at"],
    )
    # and no false alarm: before the visit is due nothing fires, whatever the outlier said
    r = await tick(db, settings, parse(visit["due_at"]) + timedelta(seconds=599))
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])
    assert await pushes(db, town.org_id) == []

    # two fixes out in a row: the engine's exit ends the visit; nothing fires after it
    body = await send(
        client,
        town.worker.headers,
        [P("away1", 80, 0, t(70), 10).ping(), P("away2", 85, 0, t(80), 10).ping()],
    )
    assert [e["type"] for e in body["events"] if e["type"] == "exit"] == ["exit"]
    assert await ok(await client.get("/v1/me/visits", headers=town.worker.headers)) == []
    ended = (
        await db.execute(
            text("SELECT state, end_reason, ended_at FROM lone_visits WHERE id = :v"),
            {"v": visit["id"]},
        )
    ).one()
    assert (ended.state, ended.end_reason, ended.ended_at) == ("ended", "exit", t(80))
    r = await tick(db, settings, parse(visit["due_at"]) + timedelta(hours=2))
    assert (r.prompts, r.alarms, r.resends) == ([], [], [])


async def test_visit_length_comes_from_the_task_else_the_category_else_the_setting(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    for category, minutes in (("park", 45), ("library", 50)):
        await ok(
            await client.put(
                f"/v1/safety/visit-lengths/{category}",
                json={"expected_duration_min": minutes},
                headers=town.admin.headers,
            )
        )
    assert await ok(await client.get("/v1/safety/visit-lengths", headers=town.editor.headers)) == [
        {"category": "library", "expected_duration_min": 50},
        {"category": "park", "expected_duration_min": 45},
    ]
    await task_at_park(client, town, minutes=None)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    assert (visit["expected_min"], visit["expected_from"]) == (45, "category")
    await client.post(f"/v1/me/visits/{visit['id']}/check-out", headers=town.worker.headers)

    # the library's length removed: the organisation's default
    await ok(
        await client.delete("/v1/safety/visit-lengths/library", headers=town.admin.headers), 204
    )
    # (worker2, who has not just been at the park: no implausible jump)
    await task_at_park(client, town, minutes=None, place=town.library, worker=town.worker2)
    await check_in(client, town.worker2, town.library, at=LIBRARY)
    visit = await my_visit(client, town.worker2)
    assert (visit["expected_min"], visit["expected_from"]) == (
        settings.lone_working_default_visit_min,
        "default",
    )


async def test_no_task_at_the_place_no_visit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await check_in(client, town.worker, town.park)
    assert await ok(await client.get("/v1/me/visits", headers=town.worker.headers)) == []


async def test_retention_deletes_old_ended_visits_and_acknowledged_alerts_only(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    await client.post(f"/v1/me/visits/{visit['id']}/check-out", headers=town.worker.headers)
    acked = await ok(await client.post("/v1/me/help", json={}, headers=town.worker.headers), 201)
    await ok(
        await client.post(
            f"/v1/safety/alerts/{acked['id']}/acknowledge", json={}, headers=town.editor.headers
        )
    )
    open_alert = await ok(
        await client.post("/v1/me/help", json={}, headers=town.worker.headers), 201
    )
    now = datetime.now(UTC)

    async def count(table: str) -> int:
        return int((await db.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())

    # a day before either period ends: nothing goes
    soon = now + timedelta(days=settings.staff_track_retention_days - 1)
    assert await service.purge(db, settings, soon) == (0, 0)
    # past the staff-track period: the ended visit; past the alert period: the acknowledged
    # alert, never the open one
    later = now + timedelta(days=settings.lone_working_alert_retention_days + 1)
    assert await service.purge(db, settings, later) == (1, 1)
    remaining = (await db.execute(text("SELECT id FROM safety_alerts"))).scalars().all()
    assert [str(a) for a in remaining] == [open_alert["id"]]
    assert await count("lone_visits") == 0


async def test_an_extension_after_the_alarm_leaves_the_alert_to_a_person_and_adds_no_second(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    due = parse(visit["due_at"])
    await tick(db, settings, due + timedelta(seconds=600))
    t_alarm = due + timedelta(seconds=1200)
    [alert_id] = (await tick(db, settings, t_alarm)).alarms
    # checking in again at the place (a repeat) keeps the one live visit
    again = await client.post(
        "/v1/checkins",
        json={"lon": -1.2560, "lat": 51.7530, "accuracy_m": 10, "geofence_id": str(town.park)},
        headers=town.worker.headers,
    )
    assert again.status_code == 200, again.text
    assert (await my_visit(client, town.worker))["id"] == visit["id"]
    extended = await ok(
        await client.post(
            f"/v1/me/visits/{visit['id']}/extend", json={"minutes": 60}, headers=town.worker.headers
        )
    )
    new_due = parse(extended["due_at"])
    # the alert still climbs its ladder until someone acknowledges it
    r = await tick(db, settings, t_alarm + timedelta(seconds=120))
    assert (r.prompts, r.resends) == ([], [alert_id])
    # the new time runs out too: asked again, but the visit's one alert is the one above
    assert new_due == due + timedelta(minutes=60)
    r = await tick(db, settings, new_due + timedelta(seconds=600))
    assert len(r.prompts) == 1
    r = await tick(db, settings, new_due + timedelta(seconds=1200))
    assert r.alarms == []
    alerts = await ok(await client.get("/v1/safety/alerts", headers=town.editor.headers))
    assert [a["id"] for a in alerts] == [str(alert_id)]
