"""One `on_events` call decides for many people at once (the ping path coalesces the batches of
many devices, across organisations, into one transaction): it costs the same statements for 2
people as for 12, and decides exactly what one call per person would have decided."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.notifications.models import PushSubscription
from app.offers.models import Offer, OfferGeofence
from app.presence import service as presence_service
from app.presence.models import EventSource, EventType
from app.rules import service as rules_service
from app.rules.models import NotificationPreference
from app.tasks.models import Task, TaskAssignee
from tests.factories import create_organisation, create_resident, create_staff
from tests.presence.helpers import create_circle
from tests.presence.test_rules import count_statements

# noon UTC: outside the default quiet hours (21-08 Europe/London) whatever the season
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


@dataclass
class Person:
    id: uuid.UUID
    org: uuid.UUID
    staff: bool
    visits: list[tuple[uuid.UUID, EventType]]


async def _org_world(
    db: AsyncSession, settings: Settings, n: int, subscription_no: list[int]
) -> list[Person]:
    """An organisation with a library, a park and a hall, offers and tasks there, and two
    residents and two field workers with different preferences (the first of each pushable)."""
    org = await create_organisation(db)
    lib = await create_circle(db, org.id, 0, 1000.0 * n, 30.0, name="Library", category="library")
    park = await create_circle(db, org.id, 200, 1000.0 * n, 30.0, name="Park", category="park")
    hall = await create_circle(db, org.id, 400, 1000.0 * n, 30.0, name="Hall", category="hall")
    market = await create_circle(
        db, org.id, 600, 1000.0 * n, 30.0, name="Market", category="market"
    )

    made: list[Offer] = []

    def offer(title: str, links: list[uuid.UUID], **kw: Any) -> Offer:
        # created in this order (equally specific offers at a place compete newest first)
        made.append(
            Offer(
                organisation_id=org.id,
                title=title,
                body="b",
                status="active",
                geofence_links=[OfferGeofence(geofence_id=g) for g in links],
                created_at=NOW - timedelta(minutes=30 - len(made)),
                **kw,
            )
        )
        return made[-1]

    db.add_all(
        [
            # everyone, at the library, again and again
            offer("Story time", [lib], triggers=["enter", "nearby"], audience="all",
                  cooldown_s=0, max_per_person=5),
            # every library of the organisation (by category): once per person
            offer("Library card", [], category="library", triggers=["enter", "dwell"],
                  max_per_person=1),
            offer("Staff coffee", [park], triggers=["enter", "dwell"], audience="staff",
                  cooldown_s=0, max_per_person=5),
            offer("Last week's fair", [hall], triggers=["enter"],
                  valid_until=NOW - timedelta(hours=1)),
            offer("Park run", [park], triggers=["nearby"], cooldown_s=0, told_max=1),
            offer("Market day", [market], triggers=["enter"], cooldown_s=0, max_per_person=5),
            offer("Concert", [hall], triggers=["enter", "checkin"], quiet_hours_policy="defer",
                  cooldown_s=0, max_per_person=5),
        ]
    )  # fmt: skip
    people: list[Person] = []
    residents = [await create_resident(db, org) for _ in range(2)]
    workers = [await create_staff(db, settings, org, Role.field_worker) for _ in range(2)]
    # resident 2: quiet hours all day long (in UTC), no parks, one a day
    db.add(
        NotificationPreference(
            organisation_id=org.id,
            device_id=residents[1].id,
            time_zone="UTC",
            quiet_start=time(0, 0),
            quiet_end=time(23, 59),
            opted_out_categories=["park"],
            max_per_day=1,
        )
    )
    # worker 2: on shift only at night
    db.add(
        NotificationPreference(
            organisation_id=org.id,
            staff_user_id=workers[1].id,
            time_zone="UTC",
            shift_start=time(22, 0),
            shift_end=time(6, 0),
        )
    )
    for w in workers:
        db.add(Task(organisation_id=org.id, geofence_id=park, title=f"Bins {w.id}",
                    assignee_links=[TaskAssignee(staff_user_id=w.id)]))  # fmt: skip
    db.add(Task(organisation_id=org.id, geofence_id=hall, title="Pool task"))
    db.add(Task(organisation_id=org.id, geofence_id=lib, title="Done", status="done",
                assignee_links=[TaskAssignee(staff_user_id=workers[0].id)]))  # fmt: skip
    for device_id, staff_id in ((residents[0].id, None), (None, workers[0].id)):
        subscription_no[0] += 1
        db.add(
            PushSubscription(
                organisation_id=org.id,
                device_id=device_id,
                staff_user_id=staff_id,
                endpoint=f"https://push.example/{n}/{subscription_no[0]}",
                origin="https://push.example",
                p256dh="p" * 87,
                auth="a" * 22,
            )
        )
    await db.flush()
    resident_visits = [
        (lib, EventType.enter),
        (lib, EventType.dwell),
        (hall, EventType.enter),
        (park, EventType.passed_through),
        (market, EventType.enter),
        (lib, EventType.nearby),
    ]
    worker_visits = [
        (park, EventType.enter),
        (hall, EventType.checkin),
        (lib, EventType.enter),
        (park, EventType.dwell),
    ]
    people += [Person(r.id, org.id, False, resident_visits) for r in residents]
    people += [Person(w.id, org.id, True, worker_visits) for w in workers]
    return people


async def _events(db: AsyncSession, people: list[Person]) -> list[dict[str, Any]]:
    rows = []
    for p in people:
        for k, (g, kind) in enumerate(p.visits):
            rows.append(
                presence_service.event_row(
                    organisation_id=p.org,
                    geofence_id=g,
                    type=kind,
                    source=EventSource.checkin if kind is EventType.checkin else EventSource.ping,
                    occurred_at=NOW - timedelta(seconds=60 - k),
                    device_id=None if p.staff else p.id,
                    staff_user_id=p.id if p.staff else None,
                    explanation={},
                )
            )
    await presence_service.record_events(db, rows)
    return rows


async def _decided(db: AsyncSession, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT d.subject_id, d.presence_event_id, d.kind, coalesce(o.title, t.title), "
            "       d.decision, d.reason, d.deliver_after, n.decision, "
            "       (SELECT count(*) FROM outbox x WHERE x.notification_id = n.id) "
            "FROM notification_decisions d "
            "LEFT JOIN offers o ON o.id = d.offer_id LEFT JOIN tasks t ON t.id = d.task_id "
            "LEFT JOIN notifications n ON n.id = d.notification_id "
            "WHERE d.presence_event_id = ANY(CAST(:ids AS uuid[])) "
            "ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
        ),
        {"ids": [e["id"] for e in events]},
    )
    return [tuple(r) for r in rows]


async def _decide(
    db: AsyncSession, engine: AsyncEngine, settings: Settings, events: list[dict[str, Any]]
) -> tuple[tuple[int, int], list[tuple[Any, ...]]]:
    """Statements of one call for these events (twice: the second meets the first's history),
    and what it decided; rolled back."""
    async with db.begin_nested() as sp:
        async with count_statements(engine, db) as seen:
            await rules_service.on_events(db, events, settings=settings, now=NOW)
        first = len(seen)
        async with count_statements(engine, db) as seen:
            await rules_service.on_events(db, events, settings=settings, now=NOW)
        out = await _decided(db, events)
        await sp.rollback()
    return (first, len(seen)), out


async def test_one_call_for_many_people_costs_the_same_and_decides_the_same(
    db: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    subscription_no = [0]
    people = []
    for n in range(3):
        people += await _org_world(db, settings, n, subscription_no)
    events = await _events(db, people)
    by_person: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for e in events:
        by_person.setdefault(e["device_id"] or e["staff_user_id"], []).append(e)
    resident0, _, worker0, _ = list(by_person)[:4]
    two = by_person[resident0] + by_person[worker0]

    await _decide(db, engine, settings, two)  # warm-up: asyncpg learns the statements' types
    count_two, _ = await _decide(db, engine, settings, two)
    count_all, together = await _decide(db, engine, settings, events)
    assert count_all == count_two

    one_by_one = []
    async with db.begin_nested() as sp:
        for evs in by_person.values():
            await rules_service.on_events(db, evs, settings=settings, now=NOW)
            await rules_service.on_events(db, evs, settings=settings, now=NOW)
        one_by_one = await _decided(db, events)
        await sp.rollback()
    assert together == one_by_one
    reasons = {(r[3], r[5]) for r in together}
    # the rules' whole range is exercised, for residents and field workers alike
    assert {
        ("Story time", None),
        ("Story time", "cooldown"),  # the place's cooldown, within one call
        ("Library card", "quiet_hours"),
        ("Park run", None),
        ("Park run", "max_reached"),  # the second call meets the first's history
        ("Park run", "opted_out"),
        ("Market day", "budget"),
        ("Last week's fair", "expired"),
        ("Staff coffee", None),
        ("Pool task", None),
        (f"Bins {worker0}", None),
        (f"Bins {worker0}", "cooldown"),
    } <= reasons
    assert any(r[5] == "not_on_shift" for r in together)
    assert any(r[3] == "Concert" and r[5] is None and r[6] is not None for r in together)
    assert any(r[8] > 0 for r in together)  # pushes for the people with a subscription
    assert len({r[0] for r in together}) == 12
