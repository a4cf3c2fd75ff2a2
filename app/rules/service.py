"""Notification rules: from a presence event to the right push, once, at the right time.

`on_events` runs inside the transaction that recorded the events (ping batches through the
presence hook, check-ins directly), for the events of any number of people of any organisations
(the ping path evaluates many devices' batches together). It finds every event's candidates in a
constant number of statements, whatever the number of people, events or candidates — live offers
at the place for the trigger, and for field workers their assigned tasks there (plus, on
check-in, the unassigned pool) — then decides each person's candidates in order:

    implausible_jump → stale → expired → closed → opted_out → max_reached → cooldown
    → not_on_shift (tasks) → quiet_hours (drop, or defer to the end) → budget → queued

Every candidate becomes a `notification_decisions` row linked to its event, and an inbox entry
(`decision="send"` when queued, else `"suppressed:<reason>"`). See docs/rules.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.config import Settings, get_settings
from app.core.errors import Forbidden, NotFound
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.geofences.opening_hours import is_open
from app.notifications import service as notifications_service
from app.notifications.models import Urgency
from app.notifications.schemas import NotificationPayload, Recipient
from app.presence import service as presence_service
from app.rules import repository
from app.rules.models import DecisionKind, NotificationPreference, Reason
from app.rules.schemas import BroadcastCreate, PreferencesUpdate, ShiftWindow

# presence event type → the offer triggers it satisfies
TRIGGERS: dict[str, tuple[str, ...]] = {
    "checkin": ("checkin",),
    "enter": ("enter",),
    "dwell": ("dwell",),
    "nearby": ("nearby",),
    "passed_through": ("nearby", "enter"),
}
TASK_EVENTS = frozenset({"checkin", "enter", "dwell", "nearby", "passed_through"})

_settings: Settings | None = None


def install(settings: Settings) -> None:
    """Use these settings for hook-driven decisions (called by the app factory)."""
    global _settings
    _settings = settings


def _current_settings() -> Settings:
    return _settings or get_settings()


# --- preferences ------------------------------------------------------------------------------


def _hhmm(value: str) -> time:
    hh, mm = value.split(":")
    return time(int(hh), int(mm))


@dataclass(frozen=True)
class Prefs:
    time_zone: str
    quiet_start: time | None
    quiet_end: time | None
    opted_out: frozenset[str]
    max_per_day: int | None
    shift_start: time | None = None
    shift_end: time | None = None
    shift_days: tuple[int, ...] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def effective_prefs(
    settings: Settings,
    kind: str,
    row: NotificationPreference | repository.StoredPrefs | None,
) -> Prefs:
    """The stored preferences, or the defaults (residents: quiet 21-08 and 3 a day; staff:
    no quiet hours, no budget — field workers follow their shift)."""
    if row is None:
        if kind == "device":
            return Prefs(
                time_zone=settings.rules_default_time_zone,
                quiet_start=_hhmm(settings.rules_default_quiet_start),
                quiet_end=_hhmm(settings.rules_default_quiet_end),
                opted_out=frozenset(),
                max_per_day=settings.rules_default_max_per_day,
            )
        return Prefs(settings.rules_default_time_zone, None, None, frozenset(), None)
    return Prefs(
        time_zone=row.time_zone,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        opted_out=frozenset(row.opted_out_categories or []),
        max_per_day=row.max_per_day,
        shift_start=row.shift_start,
        shift_end=row.shift_end,
        shift_days=tuple(row.shift_days) if row.shift_days else None,
    )


def _in_window(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(prefs: Prefs, now: datetime) -> datetime | None:
    """When the quiet hours covering `now` end (aware UTC), or None if not quiet now."""
    if prefs.quiet_start is None or prefs.quiet_end is None:
        return None
    local = now.astimezone(prefs.tz)
    if not _in_window(local.time(), prefs.quiet_start, prefs.quiet_end):
        return None
    end_day = local.date()
    if local.time() >= prefs.quiet_end:
        end_day += timedelta(days=1)
    end = datetime.combine(end_day, prefs.quiet_end, tzinfo=prefs.tz)
    return end.astimezone(UTC)


def on_shift(prefs: Prefs, now: datetime) -> bool:
    """No shift set = always on shift; else the local window on the listed weekdays."""
    if prefs.shift_start is None or prefs.shift_end is None:
        return True
    local = now.astimezone(prefs.tz)
    day = local.isoweekday()
    if prefs.shift_start > prefs.shift_end and local.time() < prefs.shift_end:
        day = (local - timedelta(days=1)).isoweekday()  # the shift began yesterday
    if prefs.shift_days is not None and day not in prefs.shift_days:
        return False
    return _in_window(local.time(), prefs.shift_start, prefs.shift_end)


def day_start(prefs: Prefs, now: datetime) -> datetime:
    local = now.astimezone(prefs.tz)
    return datetime.combine(local.date(), time(0), tzinfo=prefs.tz).astimezone(UTC)


# --- matching and decisions -------------------------------------------------------------------


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
class Outcome:
    candidates: list[Candidate] = field(default_factory=list)

    def queued(self) -> list[Candidate]:
        return [c for c in self.candidates if c.reason is None]


@dataclass
class _Person:
    """One person of an `on_events` call: their events (in the order given) and candidates."""

    subject_id: uuid.UUID
    kind: str  # "device" or "staff"
    organisation_id: uuid.UUID
    events: list[dict[str, Any]]
    role: str | None = None
    prefs: Prefs | None = None
    places: dict[uuid.UUID, repository.Place] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)


async def on_events(
    session: AsyncSession,
    events: list[dict[str, Any]],
    *,
    settings: Settings | None = None,
    implausible: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Match and decide notifications for freshly recorded events, of any number of people
    (of any organisations), in a constant number of statements; decided per person."""
    settings = settings or _current_settings()
    now = now or datetime.now(UTC)
    outcome = Outcome()
    people: dict[uuid.UUID, _Person] = {}
    for e in events:
        if e.get("suppressed_reason") is not None:
            continue
        subject_id = e["device_id"] or e["staff_user_id"]
        person = people.get(subject_id)
        if person is None:
            kind = "device" if e["device_id"] is not None else "staff"
            person = people[subject_id] = _Person(subject_id, kind, e["organisation_id"], [])
        person.events.append(e)
    if not people:
        return outcome
    ctx = await repository.context(
        session,
        [(p.subject_id, p.organisation_id, p.kind == "staff") for p in people.values()],
        sorted(
            {(e["organisation_id"], e["geofence_id"]) for p in people.values() for e in p.events}
        ),
    )
    for p in people.values():
        row = ctx.people.get(p.subject_id)
        p.role = row.role if row is not None else None
        p.prefs = effective_prefs(settings, p.kind, row.prefs if row is not None else None)
        for e in p.events:
            place = ctx.places.get((e["organisation_id"], e["geofence_id"]))
            if place is not None:
                p.places[e["geofence_id"]] = place
    await _offer_candidates(session, list(people.values()))
    await _task_candidates(session, list(people.values()))
    await _decide_all(session, settings, list(people.values()), implausible, now)
    for p in people.values():
        outcome.candidates.extend(p.candidates)
    await _record(session, settings, outcome.candidates, now)
    return outcome


async def _offer_candidates(session: AsyncSession, people: list[_Person]) -> None:
    """Live offers for every event's triggers, for everyone, in one statement."""
    flat: list[tuple[_Person, dict[str, Any]]] = []
    keys: list[repository.OfferKey] = []
    for p in people:
        audience = "residents" if p.kind == "device" else "staff"
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
                        p.subject_id,
                        audience,
                        e["geofence_id"],
                        place.category,
                        trig,
                        e["occurred_at"],
                    )
                )
    seen: set[tuple[int, uuid.UUID]] = set()
    for row in await repository.offer_candidates(session, keys):
        if (row.idx, row.id) in seen:  # passed_through matches both nearby and enter
            continue
        seen.add((row.idx, row.id))
        p, e = flat[row.idx]
        p.candidates.append(
            Candidate(e, DecisionKind.offer, e["geofence_id"], row.title, row.body, row.url, row)
        )


async def _task_candidates(session: AsyncSession, people: list[_Person]) -> None:
    """Field workers' tasks at the places of their events (plus, on check-in, the unassigned
    pool there), for all of them in one statement."""
    workers = [p for p in people if p.kind == "staff" and p.role == Role.field_worker.value]
    keys: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bool]] = []
    for p in workers:
        pool = {e["geofence_id"] for e in p.events if e["type"] == "checkin"}
        places = {
            (e["organisation_id"], e["geofence_id"]) for e in p.events if e["type"] in TASK_EVENTS
        }
        keys += [(p.subject_id, org, g, g in pool) for org, g in sorted(places)]
    rows: dict[uuid.UUID, list[repository.TaskRow]] = {}
    for t in await repository.task_candidates(session, keys):
        rows.setdefault(t.worker, []).append(t)
    for p in workers:
        task_rows = rows.get(p.subject_id, [])
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


async def _decide_all(
    session: AsyncSession,
    settings: Settings,
    people: list[_Person],
    implausible: bool,
    now: datetime,
) -> None:
    """Read everyone's queued history in one statement, then decide each person's candidates."""
    deciding = [p for p in people if p.candidates]
    keys = []
    for p in deciding:
        assert p.prefs is not None
        since = min(
            day_start(p.prefs, now), now - timedelta(seconds=settings.rules_place_cooldown_s)
        )
        keys.append(
            repository.HistoryKey(
                p.subject_id,
                p.organisation_id,
                since,
                sorted({c.offer.id for c in p.candidates if c.offer is not None}),
                sorted({c.task.id for c in p.candidates if c.task is not None}),
            )
        )
    history: dict[uuid.UUID, list[repository.HistoryRow]] = {}
    for h in await repository.queued_history(session, keys):
        history.setdefault(h.subject_id, []).append(h)
    for p in deciding:
        _decide_for(settings, p, history.get(p.subject_id, []), implausible, now)


def _decide_for(
    settings: Settings,
    person: _Person,
    history: list[repository.HistoryRow],
    implausible: bool,
    now: datetime,
) -> None:
    prefs = person.prefs
    assert prefs is not None
    day0 = day_start(prefs, now)
    offer_sent: dict[uuid.UUID, list[datetime]] = {}
    task_sent: dict[uuid.UUID, list[datetime]] = {}
    place_sent: dict[uuid.UUID, datetime] = {}
    today = 0
    for h in history:
        if h.offer_id is not None:
            offer_sent.setdefault(h.offer_id, []).append(h.created_at)
        if h.task_id is not None:
            task_sent.setdefault(h.task_id, []).append(h.created_at)
        if h.kind == DecisionKind.offer.value and h.geofence_id is not None:
            place_sent[h.geofence_id] = max(
                h.created_at, place_sent.get(h.geofence_id, h.created_at)
            )
        if h.created_at >= day0 and h.kind != DecisionKind.task.value:
            today += 1
    quiet_end = quiet_until(prefs, now) if person.kind == "device" else None
    shift_ok = on_shift(prefs, now)
    for c in person.candidates:
        c.reason, c.deliver_after = _decide(
            settings,
            c,
            now,
            implausible,
            person.places,
            prefs,
            offer_sent,
            task_sent,
            place_sent,
            today,
            quiet_end,
            shift_ok,
        )
        if c.reason is None:
            if c.offer is not None:
                offer_sent.setdefault(c.offer.id, []).append(now)
                place_sent[c.geofence_id] = now
                today += 1
            else:
                task_sent.setdefault(c.task.id, []).append(now)


def _decide(
    settings: Settings,
    c: Candidate,
    now: datetime,
    implausible: bool,
    places: dict[uuid.UUID, repository.Place],
    prefs: Prefs,
    offer_sent: dict[uuid.UUID, list[datetime]],
    task_sent: dict[uuid.UUID, list[datetime]],
    place_sent: dict[uuid.UUID, datetime],
    today: int,
    quiet_end: datetime | None,
    shift_ok: bool,
) -> tuple[Reason | None, datetime | None]:
    e = c.event
    if implausible:
        return Reason.implausible_jump, None
    if (now - e["occurred_at"]).total_seconds() > settings.rules_max_event_age_s:
        return Reason.stale, None
    place = places.get(c.geofence_id)
    if c.task is not None:
        sent = task_sent.get(c.task.id, [])
        if any((now - t).total_seconds() < settings.rules_task_cooldown_s for t in sent):
            return Reason.cooldown, None
        if not shift_ok:
            return Reason.not_on_shift, None
        return None, None
    o = c.offer
    if o.valid_until is not None and o.valid_until <= e["occurred_at"]:
        return Reason.expired, None
    if place is not None and not o.outside_opening_hours_ok:
        if not is_open(place.opening_hours, e["occurred_at"]):
            return Reason.closed, None
    categories = {place.category if place is not None else None, o.category}
    if prefs.opted_out & {x for x in categories if x}:
        return Reason.opted_out, None
    sent = offer_sent.get(o.id, [])
    if len(sent) >= o.max_per_person or o.redeemed_mine >= o.max_per_person:
        return Reason.max_reached, None
    if o.max_total is not None and o.redeemed_total >= o.max_total:
        return Reason.max_reached, None
    if any((now - t).total_seconds() < o.cooldown_s for t in sent):
        return Reason.cooldown, None
    last_here = place_sent.get(c.geofence_id)
    if (
        last_here is not None
        and (now - last_here).total_seconds() < settings.rules_place_cooldown_s
    ):
        return Reason.cooldown, None
    deliver_after = None
    if quiet_end is not None:
        if o.quiet_hours_policy != "defer":
            return Reason.quiet_hours, None
        if o.valid_until is not None and o.valid_until <= quiet_end:
            return Reason.expired, None
        deliver_after = quiet_end
    if prefs.max_per_day is not None and today >= prefs.max_per_day:
        return Reason.budget, None
    return None, deliver_after


def _payload(c: Candidate) -> tuple[NotificationPayload, dict[str, Any]]:
    related: dict[str, Any] = {"geofence_id": c.geofence_id, "presence_event_id": c.event["id"]}
    if c.offer is not None:
        related["offer_id"] = c.offer.id
        data = {"offer_id": str(c.offer.id), "geofence_id": str(c.geofence_id)}
        url = c.url or f"/offers/{c.offer.id}"
        tag = f"offer-{c.offer.id}"
        kind = "offer"
    else:
        related["task_id"] = c.task.id
        data = {"task_id": str(c.task.id), "geofence_id": str(c.geofence_id)}
        url = f"/tasks/{c.task.id}"
        tag = f"task-{c.task.id}"
        kind = "task"
    if c.reason is None and c.deliver_after is not None:
        related["deliver_after"] = c.deliver_after.isoformat()
    return (
        NotificationPayload(
            title=c.title[:200], body=c.body, url=url, tag=tag, kind=kind, data=data
        ),
        related,
    )


def _recipient(e: dict[str, Any]) -> Recipient:
    if e["device_id"] is not None:
        return Recipient("device", e["device_id"], e["organisation_id"])
    return Recipient("staff", e["staff_user_id"], e["organisation_id"])


async def _record(
    session: AsyncSession, settings: Settings, cands: list[Candidate], now: datetime
) -> None:
    if not cands:
        return
    items = []
    for c in cands:
        payload, related = _payload(c)
        items.append(
            notifications_service.Outgoing(
                recipient=_recipient(c.event),
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
        c.notification_id = nid
        e = c.event
        rows.append(
            {
                "id": uuid.uuid4(),
                "organisation_id": e["organisation_id"],
                "device_id": e["device_id"],
                "staff_user_id": e["staff_user_id"],
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


async def _event_hook(
    session: AsyncSession, events: list[Event], settings: Settings | None
) -> list[dict[str, Any]]:
    """The rules on recorded events: ping batches, and check-ins (whose queued notifications
    are the check-in's answer, returned here)."""
    pings = [e.presence for e in events if e.source is Source.ping and e.presence is not None]
    if pings:
        await on_events(session, pings)
    queued: list[dict[str, Any]] = []
    for e in events:
        if e.source is Source.checkin and e.presence is not None and e.hints.get("rules"):
            queued += await for_checkin(
                session,
                settings or get_settings(),
                e.presence,
                implausible=bool(e.hints.get("implausible")),
            )
    return queued


def register() -> None:
    """Hook the rules into every recorded event (idempotent)."""
    events_service.register_hook("rules", _event_hook)


def unregister() -> None:
    events_service.unregister_hook("rules")


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
                "recipient": {
                    "kind": "device" if r.device_id is not None else "staff",
                    "id": r.device_id or r.staff_user_id,
                },
            }
        )
    return out


# --- preferences API --------------------------------------------------------------------------


async def _row_for(
    session: AsyncSession, settings: Settings, who: SubjectRef, create: bool
) -> NotificationPreference | None:
    row = (await repository.preferences_of(session, [who.id])).get(who.id)
    if row is None and create:
        d = effective_prefs(settings, who.kind, None)
        row = NotificationPreference(
            organisation_id=who.organisation_id,
            device_id=who.device_id,
            staff_user_id=who.staff_user_id,
            time_zone=d.time_zone,
            quiet_start=d.quiet_start,
            quiet_end=d.quiet_end,
            opted_out_categories=[],
            max_per_day=d.max_per_day,
        )
        await repository.add(session, row)
    return row


async def read_preferences(
    session: AsyncSession, settings: Settings, principal: Principal, now: datetime | None = None
) -> dict[str, Any]:
    row = await _row_for(session, settings, principal, False)
    p = effective_prefs(settings, principal.kind, row)
    background = (
        await presence_service.background_location_enabled(session, principal.id)
        if principal.kind == "device"
        else None
    )
    worker = principal.role is Role.field_worker
    shift = _shift_read(p)
    return {
        "time_zone": p.time_zone,
        "quiet_hours": (
            {"start": f"{p.quiet_start:%H:%M}", "end": f"{p.quiet_end:%H:%M}"}
            if p.quiet_start is not None and p.quiet_end is not None
            else None
        ),
        "categories_opted_out": sorted(p.opted_out),
        "max_per_day": p.max_per_day,
        "background_location": background,
        "on_shift": shift,
        "on_shift_now": on_shift(p, now or datetime.now(UTC)) if worker else None,
    }


def _shift_read(p: Prefs) -> dict[str, Any] | None:
    if p.shift_start is None or p.shift_end is None:
        return None
    return {
        "start": f"{p.shift_start:%H:%M}",
        "end": f"{p.shift_end:%H:%M}",
        "days": list(p.shift_days) if p.shift_days else None,
        "time_zone": p.time_zone,
    }


def _apply_shift(row: NotificationPreference, shift: ShiftWindow | None) -> None:
    row.shift_start = shift.start if shift else None
    row.shift_end = shift.end if shift else None
    row.shift_days = shift.days if shift else None
    if shift is not None and shift.time_zone is not None:
        row.time_zone = shift.time_zone


async def update_preferences(
    session: AsyncSession, settings: Settings, principal: Principal, body: PreferencesUpdate
) -> dict[str, Any]:
    fields = body.model_fields_set
    if "on_shift" in fields and principal.role is not Role.field_worker:
        raise Forbidden("Only field workers have a shift.")
    if "background_location" in fields and principal.kind != "device":
        raise Forbidden("Background location is a resident device setting.")
    row = await _row_for(session, settings, principal, True)
    assert row is not None
    if "time_zone" in fields and body.time_zone is not None:
        row.time_zone = body.time_zone
    if "quiet_hours" in fields:
        row.quiet_start = body.quiet_hours.start if body.quiet_hours else None
        row.quiet_end = body.quiet_hours.end if body.quiet_hours else None
    if "categories_opted_out" in fields:
        row.opted_out_categories = body.categories_opted_out or []
    if "max_per_day" in fields:
        row.max_per_day = body.max_per_day
    if "on_shift" in fields:
        _apply_shift(row, body.on_shift)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    if "background_location" in fields and body.background_location is not None:
        await presence_service.set_background_location(
            session, principal.id, body.background_location
        )
    return await read_preferences(session, settings, principal)


async def set_shift(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    staff_id: uuid.UUID,
    shift: ShiftWindow | None,
) -> dict[str, Any]:
    """A field worker sets their own shift; admins and editors anyone's in their organisation."""
    target = await repository.staff_in_org(session, principal.organisation_id, staff_id)
    if target is None:
        raise NotFound("No such staff user.")
    manager = principal.role in (Role.admin, Role.editor)
    if not manager and staff_id != principal.id:
        raise Forbidden("Field workers set only their own shift.")
    if target.role != Role.field_worker.value:
        raise NotFound("No such field worker.")
    staff = SubjectRef("staff", staff_id, principal.organisation_id)
    row = await _row_for(session, settings, staff, True)
    assert row is not None
    _apply_shift(row, shift)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    p = effective_prefs(settings, "staff", row)
    return {
        "staff_user_id": staff_id,
        "on_shift": _shift_read(p),
        "time_zone": row.time_zone,
        "on_shift_now": on_shift(p, datetime.now(UTC)),
    }


# --- broadcast --------------------------------------------------------------------------------


async def broadcast(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    geofence_id: uuid.UUID,
    body: BroadcastCreate,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A one-off message to everyone at or near a place now (or checked in recently)."""
    now = now or datetime.now(UTC)
    org = principal.organisation_id
    place = await repository.live_place(session, org, geofence_id)
    if place is None:
        raise NotFound("No such place.")
    since = now - timedelta(minutes=settings.rules_broadcast_recent_checkin_min)
    people = await repository.people_at(session, org, geofence_id, since)
    if body.audience == "residents":
        people = [p for p in people if p[0] == "device"]
    elif body.audience == "staff":
        people = [p for p in people if p[0] == "staff"]
    prefs_rows = await repository.preferences_of(session, [p[1] for p in people])
    broadcast_id = uuid.uuid4()
    items = []
    decisions: list[tuple[SubjectRef, Reason | None]] = []
    for kind, pid in people:
        who = SubjectRef.of(kind, pid, org)
        prefs = effective_prefs(settings, kind, prefs_rows.get(pid))
        reason: Reason | None = None
        if not body.safety_critical:
            if place.category in prefs.opted_out:
                reason = Reason.opted_out
            elif kind == "device" and quiet_until(prefs, now) is not None:
                reason = Reason.quiet_hours
        decisions.append((who, reason))
        items.append(
            notifications_service.Outgoing(
                recipient=who,
                payload=NotificationPayload(
                    title=body.title,
                    body=body.body,
                    url=body.url,
                    tag=f"broadcast-{broadcast_id.hex[:20]}",
                    kind="broadcast",
                    data={
                        "geofence_id": str(geofence_id),
                        "broadcast_id": str(broadcast_id),
                        "safety_critical": body.safety_critical,
                    },
                ),
                related={
                    "geofence_id": geofence_id,
                    "broadcast_id": broadcast_id,
                    "safety_critical": body.safety_critical,
                },
                decision="send" if reason is None else f"suppressed:{reason.value}",
                urgency=Urgency.high if body.safety_critical else Urgency.normal,
            )
        )
    ids = await notifications_service.enqueue_many(session, items, settings)
    await repository.insert_decisions(
        session,
        [
            {
                "id": uuid.uuid4(),
                "organisation_id": org,
                **who.owner_columns(),
                "presence_event_id": None,
                "notification_id": nid,
                "geofence_id": geofence_id,
                "kind": DecisionKind.broadcast.value,
                "offer_id": None,
                "task_id": None,
                "decision": "queued" if reason is None else "suppressed",
                "reason": None if reason is None else reason.value,
                "deliver_after": None,
                "created_at": now,
            }
            for (who, reason), nid in zip(decisions, ids, strict=True)
        ],
    )
    await events_service.record(
        session,
        [
            Event(
                id=broadcast_id,
                organisation_id=org,
                type=EventType.broadcast_sent,
                source=Source.broadcast,
                occurred_at=now,
                subject=principal,
                geofence_id=geofence_id,
                data={
                    "title": body.title,
                    "safety_critical": body.safety_critical,
                    "recipients": len(people),
                },
            )
        ],
        settings,
    )
    suppressed: dict[str, int] = {}
    for _, reason in decisions:
        if reason is not None:
            suppressed[reason.value] = suppressed.get(reason.value, 0) + 1
    return {
        "geofence_id": geofence_id,
        "safety_critical": body.safety_critical,
        "recipients": len(people),
        "queued": sum(1 for d in decisions if d[1] is None),
        "suppressed": suppressed,
        "sent_at": now,
    }
