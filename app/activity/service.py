"""The activity feed: every kind of event of an organisation, newest first, in one page.

Ping and check-in events are presence's event log; every other source's events (task
transitions, redemptions, broadcasts, Open311 reports) are stored by `store_hook`, which the
composition root registers on the event pipeline. A page merges the newest of both by
(occurred_at, id), so the keyset cursor works across them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.activity import repository
from app.activity.models import ActivityEvent
from app.activity.schemas import (
    KIND_OF_SOURCE,
    SOURCE_OF_KIND,
    ActivityItem,
    ActivityKind,
    Actor,
)
from app.core.config import Settings
from app.core.subject import SubjectRef
from app.events.types import PRESENCE_TYPES, Event, Source
from app.presence import service as presence_service

# the sources whose events presence keeps (presence_events); the hook stores the others
PRESENCE_SOURCES = frozenset({Source.ping, Source.checkin})


async def store_hook(
    session: AsyncSession, events: list[Event], settings: Settings | None = None
) -> int:
    """The event pipeline's `activity` hook: keep the events presence does not keep."""
    rows = [
        {
            "id": e.id,
            "organisation_id": e.organisation_id,
            "type": e.type.value,
            "source": e.source.value,
            "occurred_at": e.occurred_at,
            "geofence_id": e.geofence_id,
            "data": dict(e.data),
            **(
                e.subject.owner_columns()
                if e.subject is not None
                else {"device_id": None, "staff_user_id": None}
            ),
        }
        for e in events
        if e.source not in PRESENCE_SOURCES
    ]
    await repository.insert_events(session, rows)
    return len(rows)


def _presence_item(row: Any) -> dict[str, Any]:
    r = dict(row._mapping)
    return {
        "id": r["id"],
        "kind": ActivityKind.checkin if r["type"] == "checkin" else ActivityKind.presence,
        "type": PRESENCE_TYPES[r["type"]].value,
        "occurred_at": r["occurred_at"],
        "geofence_id": r["geofence_id"],
        "who": SubjectRef.owning(r["device_id"], r["staff_user_id"], r["organisation_id"]),
        "data": {"event": r["type"]},
        "explanation": r["explanation"] or {},
    }


def _stored_item(e: ActivityEvent) -> dict[str, Any]:
    who = (
        None
        if e.device_id is None and e.staff_user_id is None
        else SubjectRef.owning(e.device_id, e.staff_user_id, e.organisation_id)
    )
    return {
        "id": e.id,
        "kind": KIND_OF_SOURCE[e.source],
        "type": e.type,
        "occurred_at": e.occurred_at,
        "geofence_id": e.geofence_id,
        "who": who,
        "data": e.data,
        "explanation": {},
    }


async def feed(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    kinds: list[ActivityKind] | None,
    geofence_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    viewer_id: uuid.UUID | None = None,
) -> list[ActivityItem]:
    """Up to `limit` items of these kinds (all when None), newest first, after the cursor.

    With `viewer_id`, other staff members' presence and check-in events are left out: they are
    that worker's location history, which no colleague or supervisor may see (as in the event
    log, GET /v1/events)."""
    wanted = set(kinds or list(ActivityKind))
    items: list[dict[str, Any]] = []
    presence_types = [
        t
        for t, kind in (
            ("enter", ActivityKind.presence),
            ("exit", ActivityKind.presence),
            ("dwell", ActivityKind.presence),
            ("nearby", ActivityKind.presence),
            ("passed_through", ActivityKind.presence),
            ("checkin", ActivityKind.checkin),
        )
        if kind in wanted
    ]
    if presence_types:
        rows = await presence_service.list_events(
            session,
            organisation_id,
            geofence_id=geofence_id,
            types=presence_types,
            since=None,
            until=None,
            include_suppressed=False,
            after=after,
            limit=limit,
            viewer_id=viewer_id,
        )
        items += [_presence_item(r) for r in rows]
    sources = [
        SOURCE_OF_KIND[k]
        for k in sorted(wanted)
        if k not in (ActivityKind.presence, ActivityKind.checkin)
    ]
    if sources:
        stored = await repository.list_events(
            session,
            organisation_id,
            sources=sources,
            geofence_id=geofence_id,
            after=after,
            limit=limit,
        )
        items += [_stored_item(e) for e in stored]
    items.sort(key=lambda i: (i["occurred_at"], i["id"]), reverse=True)
    items = items[:limit]
    staff = await accounts_service.names_in_org(
        session,
        organisation_id,
        sorted({i["who"].id for i in items if i["who"] is not None and i["who"].kind == "staff"}),
    )
    out = []
    for i in items:
        who: SubjectRef | None = i.pop("who")
        actor = None
        if who is not None and who.kind == "device":
            actor = Actor(kind="resident", id=who.id)
        elif who is not None:
            name, role = staff.get(who.id, (None, None))
            actor = Actor(kind="staff", id=who.id, name=name, role=role)
        out.append(ActivityItem(actor=actor, **i))
    return out


async def events_of(session: AsyncSession, who: SubjectRef) -> list[dict[str, Any]]:
    """What the feed keeps about one person (for their data export)."""
    return [
        {
            "id": e.id,
            "type": e.type,
            "occurred_at": e.occurred_at,
            "geofence_id": e.geofence_id,
            "data": e.data,
        }
        for e in await repository.events_of(session, who)
    ]


async def purge(session: AsyncSession, retention: timedelta, now: datetime) -> int:
    """Delete events older than `retention` (the presence events' period); returns how many."""
    return await repository.delete_older(session, now - retention)
