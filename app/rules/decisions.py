"""Decisions: from freshly recorded presence events to the right push, once, at the right time.

`on_events` runs inside the transaction that recorded the events (ping batches through the
hook the app factory hands to presence, check-ins directly), for the events of any number of
people of any organisations (the ping path evaluates many devices' batches together). It finds
every event's candidates in a constant number of statements, whatever the number of people,
events or candidates (`app.rules.matching`), then decides each person's candidates in order:

    implausible_jump → stale → expired → closed → opted_out → redeemed → max_reached
    → cooldown (this offer) → outranked (an earlier, more specific offer of the event queued)
    → cooldown (the place) → not_on_shift (tasks) → quiet_hours (drop, or defer) → budget
    → queued

An event's offer candidates come most specific first (the place's own, its category's), then
by priority, then newest (`repository.offer_candidates`), so the first queued is the winner.

Every candidate becomes a `notification_decisions` row linked to its event, and an inbox entry
(`decision="send"` when queued, else `"suppressed:<reason>"`). See docs/rules.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.core.pace import breathe
from app.core.subject import SubjectRef
from app.events.types import Event, Source
from app.geofences.opening_hours import is_open
from app.notifications import service as notifications_service
from app.notifications.models import Urgency
from app.notifications.schemas import NotificationPayload
from app.rules import reasons, repository
from app.rules.matching import (
    Candidate,
    Person,
    event_subject,
    offer_candidates,
    task_candidates,
)
from app.rules.models import DecisionKind, Reason
from app.rules.windows import Prefs, day_start, effective_prefs, on_shift, quiet_until

EventHook = Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[None]]


@dataclass
class Outcome:
    candidates: list[Candidate] = field(default_factory=list)

    def queued(self) -> list[Candidate]:
        return [c for c in self.candidates if c.reason is None]


async def on_events(
    session: AsyncSession,
    events: list[dict[str, Any]],
    *,
    settings: Settings,
    implausible: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Match and decide notifications for freshly recorded events, of any number of people
    (of any organisations), in a constant number of statements; decided per person."""
    now = now or datetime.now(UTC)
    outcome = Outcome()
    people: dict[uuid.UUID, Person] = {}
    for e in events:
        await breathe()  # hundreds of people's events from an evaluated set (app/core/pace.py)
        if e.get("suppressed_reason") is not None:
            continue
        who = event_subject(e)
        person = people.get(who.id)
        if person is None:
            person = people[who.id] = Person(who, [])
        person.events.append(e)
    if not people:
        return outcome
    ctx = await repository.context(
        session,
        [(p.who.id, p.who.organisation_id, p.who.kind == "staff") for p in people.values()],
        sorted(
            {(e["organisation_id"], e["geofence_id"]) for p in people.values() for e in p.events}
        ),
    )
    for p in people.values():
        await breathe()
        row = ctx.people.get(p.who.id)
        p.role = row.role if row is not None else None
        p.prefs = effective_prefs(settings, p.who.kind, row.prefs if row is not None else None)
        for e in p.events:
            place = ctx.places.get((e["organisation_id"], e["geofence_id"]))
            if place is not None:
                p.places[e["geofence_id"]] = place
    await offer_candidates(session, list(people.values()))
    await task_candidates(session, list(people.values()))
    await _decide_all(session, settings, list(people.values()), implausible, now)
    for p in people.values():
        outcome.candidates.extend(p.candidates)
    await _record(session, settings, outcome.candidates, now)
    return outcome


async def pipeline_hook(
    session: AsyncSession, events: list[Event], settings: Settings | None
) -> list[dict[str, Any]]:
    """The rules as a hook of the event pipeline (`app.events.service.record`, wired by the app
    factory): ping batches' events, and check-ins, whose queued notifications are the
    check-in's answer (returned here)."""
    settings = settings or get_settings()
    pings = [e.presence for e in events if e.source is Source.ping and e.presence is not None]
    if pings:
        await on_events(session, pings, settings=settings)
    queued: list[dict[str, Any]] = []
    for e in events:
        if e.source is Source.checkin and e.presence is not None and e.hints.get("rules"):
            queued += await for_checkin(
                session, settings, e.presence, implausible=bool(e.hints.get("implausible"))
            )
    return queued


def event_hook(settings: Settings) -> EventHook:
    """The rules as a presence event hook with these settings (the app factory wires it)."""

    async def hook(session: AsyncSession, events: list[dict[str, Any]]) -> None:
        await on_events(session, events, settings=settings)

    return hook


# Which staff (ids) are on an ad-hoc shift at a time: the shifts domain sits above the rules, so
# the composition root registers its check (`app.shifts.service.on_adhoc_shift`); until then
# nobody is, and task pushes follow the shift window alone.
AdhocShiftCheck = Callable[[AsyncSession, list[uuid.UUID], datetime], Awaitable[set[uuid.UUID]]]
_adhoc_shift_check: list[AdhocShiftCheck] = []


def register_adhoc_shift_check(check: AdhocShiftCheck) -> None:
    """An ad-hoc shift counts as on shift for task pushes (idempotent)."""
    _adhoc_shift_check[:] = [check]


async def _on_adhoc_shift(
    session: AsyncSession, people: list[Person], now: datetime
) -> set[uuid.UUID]:
    staff = [
        p.who.id
        for p in people
        if p.who.kind == "staff" and any(c.task is not None for c in p.candidates)
    ]
    if not staff or not _adhoc_shift_check:
        return set()
    return await _adhoc_shift_check[0](session, staff, now)


async def _decide_all(
    session: AsyncSession,
    settings: Settings,
    people: list[Person],
    implausible: bool,
    now: datetime,
) -> None:
    """Read everyone's queued history in one statement, then decide each person's candidates."""
    deciding = [p for p in people if p.candidates]
    keys = []
    for p in deciding:
        await breathe()
        assert p.prefs is not None
        since = min(
            day_start(p.prefs, now), now - timedelta(seconds=settings.rules_place_cooldown_s)
        )
        keys.append(
            repository.HistoryKey(
                p.who.id,
                p.who.organisation_id,
                since,
                sorted({c.offer.id for c in p.candidates if c.offer is not None}),
                sorted({c.task.id for c in p.candidates if c.task is not None}),
            )
        )
    history: dict[uuid.UUID, list[repository.HistoryRow]] = {}
    for h in await repository.queued_history(session, keys):
        history.setdefault(h.subject_id, []).append(h)
    adhoc = await _on_adhoc_shift(session, deciding, now)
    for p in deciding:
        await breathe()
        assert p.prefs is not None
        moment = Moment(
            settings=settings,
            now=now,
            implausible=implausible,
            prefs=p.prefs,
            places=p.places,
            quiet_end=quiet_until(p.prefs, now) if p.who.kind == "device" else None,
            shift_ok=p.who.id in adhoc or on_shift(p.prefs, now),
        )
        ledger = Ledger.of(history.get(p.who.id, []), day_start(p.prefs, now))
        for c in p.candidates:
            c.reason, c.deliver_after = decide(c, moment, ledger)
            if c.reason is None:
                ledger.queue(c, now)


@dataclass(frozen=True)
class Moment:
    """What a person's decisions are taken against: the time, their preferences and places."""

    settings: Settings
    now: datetime
    implausible: bool
    prefs: Prefs
    places: dict[uuid.UUID, repository.Place]
    quiet_end: datetime | None  # residents in quiet hours: when they end
    shift_ok: bool


@dataclass
class Ledger:
    """What a person was already sent: the stored history, then this call's queued candidates."""

    offers: dict[uuid.UUID, list[datetime]] = field(default_factory=dict)
    tasks: dict[uuid.UUID, list[datetime]] = field(default_factory=dict)
    places: dict[uuid.UUID, datetime] = field(default_factory=dict)  # last offer at each place
    won: dict[Any, Candidate] = field(default_factory=dict)  # the offer queued for each event
    today: int = 0  # offers and broadcasts queued since the local midnight

    @classmethod
    def of(cls, history: list[repository.HistoryRow], day0: datetime) -> Ledger:
        ledger = cls()
        for h in history:
            if h.offer_id is not None:
                ledger.offers.setdefault(h.offer_id, []).append(h.created_at)
            if h.task_id is not None:
                ledger.tasks.setdefault(h.task_id, []).append(h.created_at)
            if h.kind == DecisionKind.offer.value and h.geofence_id is not None:
                ledger.places[h.geofence_id] = max(
                    h.created_at, ledger.places.get(h.geofence_id, h.created_at)
                )
            if h.created_at >= day0 and h.kind != DecisionKind.task.value:
                ledger.today += 1
        return ledger

    def queue(self, c: Candidate, now: datetime) -> None:
        if c.offer is not None:
            self.offers.setdefault(c.offer.id, []).append(now)
            self.places[c.geofence_id] = now
            self.won.setdefault(c.event["id"], c)
            self.today += 1
        else:
            self.tasks.setdefault(c.task.id, []).append(now)


Decision = tuple[Reason | None, datetime | None]  # (why not, or None = queued; deliver after)


def decide(c: Candidate, m: Moment, ledger: Ledger) -> Decision:
    if m.implausible:
        return Reason.implausible_jump, None
    if (m.now - c.event["occurred_at"]).total_seconds() > m.settings.rules_max_event_age_s:
        return Reason.stale, None
    if c.task is not None:
        return decide_task(c, m, ledger)
    return decide_offer(c, m, ledger)


def decide_task(c: Candidate, m: Moment, ledger: Ledger) -> Decision:
    sent = ledger.tasks.get(c.task.id, [])
    if any((m.now - t).total_seconds() < m.settings.rules_task_cooldown_s for t in sent):
        return Reason.cooldown, None
    if not m.shift_ok:
        return Reason.not_on_shift, None
    return None, None


def decide_offer(c: Candidate, m: Moment, ledger: Ledger) -> Decision:
    o, occurred_at = c.offer, c.event["occurred_at"]
    place = m.places.get(c.geofence_id)
    if o.valid_until is not None and o.valid_until <= occurred_at:
        return Reason.expired, None
    if place is not None and not o.outside_opening_hours_ok:
        if not is_open(place.opening_hours, occurred_at):
            return Reason.closed, None
    categories = {place.category if place is not None else None, o.category}
    if m.prefs.opted_out & {x for x in categories if x}:
        return Reason.opted_out, None
    if o.redeemed_mine >= o.max_per_person:
        return Reason.redeemed, None
    sent = ledger.offers.get(o.id, [])
    if o.told_max is not None and len(sent) >= o.told_max:
        return Reason.max_reached, None
    if o.max_total is not None and o.redeemed_total >= o.max_total:
        return Reason.max_reached, None
    if any((m.now - t).total_seconds() < o.cooldown_s for t in sent):
        return Reason.cooldown, None
    if c.event["id"] in ledger.won:  # an event's offers come most specific first (repository)
        return Reason.outranked, None
    last_here = ledger.places.get(c.geofence_id)
    if (
        last_here is not None
        and (m.now - last_here).total_seconds() < m.settings.rules_place_cooldown_s
    ):
        return Reason.cooldown, None
    deliver_after = None
    if m.quiet_end is not None:
        if o.quiet_hours_policy != "defer":
            return Reason.quiet_hours, None
        if o.valid_until is not None and o.valid_until <= m.quiet_end:
            return Reason.expired, None
        deliver_after = m.quiet_end
    if m.prefs.max_per_day is not None and ledger.today >= m.prefs.max_per_day:
        return Reason.budget, None
    return None, deliver_after


def _payload(c: Candidate) -> tuple[NotificationPayload, dict[str, Any]]:
    related: dict[str, Any] = {"geofence_id": c.geofence_id, "presence_event_id": c.event["id"]}
    if c.offer is not None:
        related["offer_id"] = c.offer.id
        data = {"offer_id": str(c.offer.id), "geofence_id": str(c.geofence_id)}
        url = c.url or f"/app/#offer/{c.offer.id}"  # the app's offer page
        tag = f"offer-{c.offer.id}"
        kind = "offer"
    else:
        related["task_id"] = c.task.id
        data = {"task_id": str(c.task.id), "geofence_id": str(c.geofence_id)}
        url = f"/app/#task/{c.task.id}"
        tag = f"task-{c.task.id}"
        kind = "task"
    if c.reason is None and c.deliver_after is not None:
        related["deliver_after"] = c.deliver_after.isoformat()
    if c.reason is not None:
        related["reason_text"] = reasons.for_resident(c.reason)
    return (
        NotificationPayload(
            title=c.title[:200], body=c.body, url=url, tag=tag, kind=kind, data=data
        ),
        related,
    )


async def _record(
    session: AsyncSession, settings: Settings, cands: list[Candidate], now: datetime
) -> None:
    if not cands:
        return
    items = []
    for c in cands:
        await breathe()
        payload, related = _payload(c)
        items.append(
            notifications_service.Outgoing(
                recipient=event_subject(c.event),
                payload=payload,
                related=related,
                decision="send" if c.reason is None else f"suppressed:{c.reason.value}",
                urgency=Urgency.high if c.task is not None else Urgency.normal,
                not_before=c.deliver_after,
            )
        )
    ids = await notifications_service.enqueue_many(session, items, settings)
    rows = []
    for c, nid in zip(cands, ids, strict=True):
        await breathe()
        c.notification_id = nid
        e = c.event
        rows.append(
            {
                "id": uuid.uuid4(),
                "organisation_id": e["organisation_id"],
                **event_subject(e).owner_columns(),
                "presence_event_id": e["id"],
                "notification_id": nid,
                "geofence_id": c.geofence_id,
                "kind": c.kind.value,
                "offer_id": c.offer.id if c.offer is not None else None,
                "task_id": c.task.id if c.task is not None else None,
                "decision": "queued" if c.reason is None else "suppressed",
                "reason": None if c.reason is None else c.reason.value,
                "deliver_after": c.deliver_after,
                "created_at": now,
            }
        )
    await repository.insert_decisions(session, rows)


async def for_checkin(
    session: AsyncSession,
    settings: Settings,
    event: dict[str, Any],
    *,
    implausible: bool,
) -> list[dict[str, Any]]:
    """Decide a check-in's notifications; returns what was queued (for the response)."""
    outcome = await on_events(session, [event], settings=settings, implausible=implausible)
    return [
        {
            "id": c.notification_id,
            "title": c.title,
            "kind": c.kind.value,
        }
        for c in outcome.queued()
    ]


# --- explanations for staff -------------------------------------------------------------------


async def decisions_for_events(
    session: AsyncSession, organisation_id: uuid.UUID, event_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in await repository.decisions_for_events(session, organisation_id, event_ids):
        who = SubjectRef.owning(r.device_id, r.staff_user_id, organisation_id)
        out.setdefault(r.presence_event_id, []).append(
            {
                "id": r.id,
                "kind": r.kind,
                "offer_id": r.offer_id,
                "task_id": r.task_id,
                "notification_id": r.notification_id,
                "decision": r.decision,
                "reason": r.reason,
                "deliver_after": r.deliver_after,
                "recipient": {"kind": who.kind, "id": who.id},
                "explanation": (
                    reasons.for_staff(Reason(r.reason))
                    if r.reason is not None
                    else reasons.for_staff_queued(r.deliver_after)
                ),
            }
        )
    return out
