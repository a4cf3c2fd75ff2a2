"""Matching: the candidates of a call's events, for everyone, in one statement per kind.

Live offers at the place for each event's trigger; for field workers, their assigned tasks at
the place (plus, on check-in, the unassigned pool there).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.pace import breathe
from app.core.subject import SubjectRef
from app.rules import repository
from app.rules.models import DecisionKind, Reason
from app.rules.windows import Prefs

# presence event type → the offer triggers it satisfies
TRIGGERS: dict[str, tuple[str, ...]] = {
    "checkin": ("checkin",),
    "enter": ("enter",),
    "dwell": ("dwell",),
    "nearby": ("nearby",),
    "passed_through": ("nearby", "enter"),
}
TASK_EVENTS = frozenset({"checkin", "enter", "dwell", "nearby", "passed_through"})


@dataclass
class Candidate:
    event: dict[str, Any]
    kind: DecisionKind
    geofence_id: uuid.UUID
    title: str
    body: str
    url: str | None
    offer: Any = None
    task: Any = None
    reason: Reason | None = None
    deliver_after: datetime | None = None
    notification_id: uuid.UUID | None = None


@dataclass
class Person:
    """One person of an `on_events` call: their events (in the order given) and candidates."""

    who: SubjectRef
    events: list[dict[str, Any]]
    role: str | None = None
    prefs: Prefs | None = None
    places: dict[uuid.UUID, repository.Place] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)


def event_subject(e: dict[str, Any]) -> SubjectRef:
    """Who an event (a `presence_events` row as a dict) is about."""
    return SubjectRef.owning(e["device_id"], e["staff_user_id"], e["organisation_id"])


async def offer_candidates(session: AsyncSession, people: list[Person]) -> None:
    """Live offers for every event's triggers, for everyone, in one statement."""
    flat: list[tuple[Person, dict[str, Any]]] = []
    keys: list[repository.OfferKey] = []
    for p in people:
        await breathe()  # hundreds of people from an evaluated set (app/core/pace.py)
        audience = "residents" if p.who.kind == "device" else "staff"
        for e in p.events:
            idx = len(flat)
            flat.append((p, e))
            place = p.places.get(e["geofence_id"])
            if place is None:
                continue
            for trig in TRIGGERS.get(e["type"], ()):
                keys.append(
                    repository.OfferKey(
                        idx,
                        e["organisation_id"],
                        p.who.id,
                        audience,
                        e["geofence_id"],
                        place.category,
                        trig,
                        e["occurred_at"],
                    )
                )
    seen: set[tuple[int, uuid.UUID]] = set()
    for row in await repository.offer_candidates(session, keys):
        await breathe()
        if (row.idx, row.id) in seen:  # passed_through matches both nearby and enter
            continue
        seen.add((row.idx, row.id))
        p, e = flat[row.idx]
        p.candidates.append(
            Candidate(e, DecisionKind.offer, e["geofence_id"], row.title, row.body, row.url, row)
        )


async def task_candidates(session: AsyncSession, people: list[Person]) -> None:
    """Field workers' tasks at the places of their events (plus, on check-in, the unassigned
    pool there), for all of them in one statement."""
    workers = [p for p in people if p.who.kind == "staff" and p.role == Role.field_worker.value]
    keys: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bool]] = []
    for p in workers:
        pool = {e["geofence_id"] for e in p.events if e["type"] == "checkin"}
        places = {
            (e["organisation_id"], e["geofence_id"]) for e in p.events if e["type"] in TASK_EVENTS
        }
        keys += [(p.who.id, org, g, g in pool) for org, g in sorted(places)]
    rows: dict[uuid.UUID, list[repository.TaskRow]] = {}
    for t in await repository.task_candidates(session, keys):
        rows.setdefault(t.worker, []).append(t)
    for p in workers:
        task_rows = rows.get(p.who.id, [])
        for e in p.events:
            if e["type"] not in TASK_EVENTS:
                continue
            for t in task_rows:
                if t.geofence_id != e["geofence_id"]:
                    continue
                if not t.mine and e["type"] != "checkin":
                    continue
                place = p.places.get(e["geofence_id"])
                place_name = place.name if place is not None else ""
                body = (t.description or "")[:200] or f"At {place_name}"
                p.candidates.append(
                    Candidate(e, DecisionKind.task, e["geofence_id"], t.title, body, None, task=t)
                )
