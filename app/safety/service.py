"""Lone working: task visits that should end, the "Are you OK?" prompt, alarms, "I need help",
and the escalation ladder until a person acknowledges (docs/tasks.md, "Lone working").

A visit starts when a field worker with an open task at a place checks in there or the presence
engine says they entered it (`on_events`, a hook of the event pipeline), and ends on check-out or
when the presence engine says they left (its `exit`, with the engine's confidence rules: one
outlier never ends a stay). Everything after that is driven by the server's clock: `tick(now)`,
run by the scheduled job (`app/safety/worker.py`), whose state is only the rows here. Flushes,
never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.accounts.models import Role
from app.accounts.principal import Principal
from app.audit import service as audit_service
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.core.localtime import clock
from app.events.types import Event, EventType
from app.geofences import service as geofence_service
from app.notifications import service as notifications_service
from app.notifications.models import Urgency
from app.notifications.schemas import NotificationPayload, Recipient
from app.notifications.service import Outgoing
from app.safety import repository
from app.safety.errors import (
    AlertNotFound,
    AlreadyAcknowledged,
    CategoryNotSet,
    InvalidOnCall,
    NotAResponder,
    UnknownCategory,
    VisitEnded,
    VisitNotFound,
)
from app.safety.models import (
    AlertKind,
    CategoryVisitLength,
    LoneVisit,
    SafetyAlert,
    VisitState,
)
from app.safety.schemas import HelpBody, OnCallEntry

BATCH = 100
PROMPT_KIND = "safety.prompt"
ALERT_KIND = "safety.alert"
STARTS = {EventType.place_entered: "presence", EventType.checkin_created: "checkin"}


def expected_length(
    task_min: int | None, category_min: int | None, default_min: int
) -> tuple[int, str]:
    """A visit's expected length in minutes and where it came from: the task (an Open311
    service's template sets its tasks' value), else the place category's, else the setting."""
    if task_min is not None:
        return task_min, "task"
    if category_min is not None:
        return category_min, "category"
    return default_min, "default"


async def _clock(
    session: AsyncSession, settings: Settings, organisation_id: uuid.UUID, at: datetime
) -> str:
    """A time in a push's words: local to the organisation, with the zone ('15:30 BST')."""
    return clock(at, await accounts_service.local_zone(session, settings, organisation_id))


# --- visits: started and ended by the event pipeline -----------------------------------------


async def start_visit(
    session: AsyncSession,
    settings: Settings,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    geofence_id: uuid.UUID,
    at: datetime,
    started_by: str,
) -> uuid.UUID | None:
    """Start a visit if the worker has an open task at the place and no live visit there."""
    task = await repository.worker_task_at(session, organisation_id, worker_id, geofence_id)
    if task is None:
        return None
    place = await repository.place_length(session, organisation_id, geofence_id)
    if place is None:
        return None
    minutes, source = expected_length(task[1], place[1], settings.lone_working_default_visit_min)
    return await repository.start_visit(
        session,
        {
            "id": uuid.uuid4(),
            "organisation_id": organisation_id,
            "worker_id": worker_id,
            "geofence_id": geofence_id,
            "task_id": task[0],
            "started_at": at,
            "started_by": started_by,
            "expected_min": minutes,
            "expected_from": source,
            "due_at": at + timedelta(minutes=minutes),
            "state": VisitState.active.value,
        },
    )


async def on_events(
    session: AsyncSession, events: list[Event], settings: Settings | None
) -> list[uuid.UUID]:
    """The event pipeline's `lone_working` hook: a staff member's enter or check-in at a place
    starts a visit, their exit ends it. Returns the visits started."""
    settings = settings or Settings()
    started: list[uuid.UUID] = []
    for e in events:
        if e.subject is None or e.subject.kind != "staff" or e.geofence_id is None:
            continue
        if e.type in STARTS and not e.hints.get("implausible"):
            visit = await start_visit(
                session,
                settings,
                organisation_id=e.organisation_id,
                worker_id=e.subject.id,
                geofence_id=e.geofence_id,
                at=min(e.occurred_at, datetime.now(UTC)),
                started_by=STARTS[e.type],
            )
            if visit is not None:
                started.append(visit)
        elif e.type == EventType.place_exited:
            await repository.end_visits(
                session,
                organisation_id=e.organisation_id,
                worker_id=e.subject.id,
                geofence_id=e.geofence_id,
                at=e.occurred_at,
                reason="exit",
            )
    return started


# --- the worker's own actions ------------------------------------------------------------------


async def my_visits(session: AsyncSession, principal: Principal) -> list[LoneVisit]:
    return await repository.active_visits(session, principal.organisation_id, principal.id)


async def _own_live_visit(
    session: AsyncSession, principal: Principal, visit_id: uuid.UUID
) -> LoneVisit:
    visit = await repository.own_visit(
        session, principal.organisation_id, principal.id, visit_id, lock=True
    )
    if visit is None:
        raise VisitNotFound()
    if visit.state != VisitState.active.value:
        ended = visit.ended_at.isoformat() if visit.ended_at else None
        raise VisitEnded(
            f"This visit has ended ({visit.end_reason}).",
            extra={"end_reason": visit.end_reason, "ended_at": ended},
        )
    return visit


async def extend(
    session: AsyncSession,
    principal: Principal,
    visit_id: uuid.UUID,
    minutes: int,
    *,
    now: datetime,
    max_min: int,
) -> LoneVisit:
    """Push the visit's end `minutes` past now (or past its due time, if later); the worker is
    asked again only when the new time has passed. An alert already raised stays until someone
    acknowledges it."""
    if minutes > max_min:
        raise Unprocessable(
            f"A visit is extended by at most {max_min} minutes at a time.",
            extra={"field": "minutes", "max": max_min},
        )
    visit = await _own_live_visit(session, principal, visit_id)
    visit.due_at = max(visit.due_at, now) + timedelta(minutes=minutes)
    visit.prompted_at = None
    visit.extended_count += 1
    await session.flush()
    return visit


async def check_out(
    session: AsyncSession, principal: Principal, visit_id: uuid.UUID, *, now: datetime
) -> LoneVisit:
    visit = await _own_live_visit(session, principal, visit_id)
    visit.state = VisitState.ended.value
    visit.ended_at = now
    visit.end_reason = "checkout"
    await session.flush()
    return visit


# --- alerts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    recipients: list[uuid.UUID]
    notifications: list[uuid.UUID]


async def _ladder_recipients(
    session: AsyncSession, organisation_id: uuid.UUID, worker_id: uuid.UUID, level: int
) -> list[uuid.UUID]:
    """Who rung `level` calls: the on-call list's first `level + 1` ranks; past its last rank
    (or without an on-call list) the organisation's admins as well. Never the worker."""
    contacts = await repository.on_call(session, organisation_id)
    ranks = sorted({r for _, r in contacts})
    chosen = [s for s, r in contacts if r in ranks[: level + 1]]
    if level + 1 > len(ranks):
        chosen += await repository.admins(session, organisation_id)
    out = [s for s in dict.fromkeys(chosen) if s != worker_id]
    if not out:  # the worker is the only contact: the admins still hear of it
        out = [s for s in await repository.admins(session, organisation_id) if s != worker_id]
    return out


async def _send_alert(
    session: AsyncSession, settings: Settings, alert: SafetyAlert, worker_name: str
) -> Sent:
    recipients = await _ladder_recipients(
        session, alert.organisation_id, alert.worker_id, alert.level
    )
    what = "needs help" if alert.kind == AlertKind.help.value else "has not checked in"
    where = alert.place_name or "an unknown place"
    seen = ""
    if alert.last_seen_at is not None:
        seen = " at " + await _clock(session, settings, alert.organisation_id, alert.last_seen_at)
    payload = NotificationPayload(
        title=f"URGENT: {worker_name} {what}"[:200],
        body=f"Last known: {where}{seen}. Open the console to acknowledge.",
        url=f"/console#alerts/{alert.id}",
        tag=f"alert{alert.id.hex[:24]}",
        kind=ALERT_KIND,
        data={
            "alert_id": str(alert.id),
            "worker_id": str(alert.worker_id),
            "alert_kind": alert.kind,
            "place": alert.place_name,
            "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
            "level": alert.level,
        },
    )
    items = [
        Outgoing(
            recipient=Recipient("staff", r, alert.organisation_id),
            payload=payload,
            related={"alert_id": alert.id},
            urgency=Urgency.high,
            ttl_s=3600,
        )
        for r in recipients
    ]
    ids = await notifications_service.enqueue_many(session, items, settings)
    alert.sends += 1
    return Sent(recipients, ids)


def _next_send(settings: Settings, level: int, now: datetime) -> datetime:
    ladder = settings.lone_working_ladder_s
    return now + timedelta(seconds=ladder[min(level, len(ladder) - 1)])


async def _raise(
    session: AsyncSession,
    settings: Settings,
    *,
    values: dict[str, object],
    worker_name: str,
    now: datetime,
) -> SafetyAlert | None:
    """Insert an alert (None if its visit already has one), send rung 0, audit it."""
    alert_id = await repository.insert_alert(
        session, {**values, "level": 0, "next_send_at": _next_send(settings, 0, now)}
    )
    if alert_id is None:
        return None
    org = values["organisation_id"]
    assert isinstance(org, uuid.UUID)
    alert = await repository.get_alert(session, org, alert_id)
    assert alert is not None
    sent = await _send_alert(session, settings, alert, worker_name)
    await audit_service.record_system(
        session,
        alert.organisation_id,
        "safety.alert.raise",
        "safety_alert",
        alert.id,
        {
            "kind": alert.kind,
            "worker_id": str(alert.worker_id),
            "visit_id": str(alert.visit_id) if alert.visit_id else None,
            "recipients": [str(r) for r in sent.recipients],
        },
    )
    await session.flush()
    return alert


async def _last_known(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    visit: LoneVisit | None,
) -> dict[str, object]:
    """The worker's last location fix; the visit's start (a check-in, an enter) when that is
    later or there is no fix (then without coordinates: the place says where)."""
    fix = await repository.last_fix(session, organisation_id, worker_id)
    if fix is not None and (visit is None or fix[0] >= visit.started_at):
        return {"last_seen_at": fix[0], "last_lon": fix[1], "last_lat": fix[2]}
    return {
        "last_seen_at": visit.started_at if visit else None,
        "last_lon": None,
        "last_lat": None,
    }


async def need_help(
    session: AsyncSession, settings: Settings, principal: Principal, body: HelpBody, now: datetime
) -> SafetyAlert:
    """ "I need help": an alert at once, on the same ladder as an overdue visit's."""
    org, worker = principal.organisation_id, principal.id
    visits = await repository.active_visits(session, org, worker)
    visit = visits[0] if visits else None
    last = await _last_known(session, org, worker, visit)
    if body.lon is not None and body.lat is not None:
        last = {"last_seen_at": now, "last_lon": body.lon, "last_lat": body.lat}
    name = await repository.staff_name(session, worker) or "A colleague"
    alert = await _raise(
        session,
        settings,
        values={
            "id": uuid.uuid4(),
            "organisation_id": org,
            "worker_id": worker,
            "visit_id": None,  # an overdue alarm for the visit stays possible
            "kind": AlertKind.help.value,
            "raised_at": now,
            "geofence_id": visit.geofence_id if visit else None,
            "place_name": await repository.place_name(session, visit.geofence_id)
            if visit
            else None,
            "note": body.note,
            **last,
        },
        worker_name=name,
        now=now,
    )
    assert alert is not None  # no visit id: nothing to conflict with
    return alert


@dataclass
class TickResult:
    prompts: list[uuid.UUID]  # visits whose worker was asked "Are you OK?"
    alarms: list[uuid.UUID]  # alerts raised
    resends: list[uuid.UUID]  # alerts re-sent up the ladder

    @property
    def full(self) -> bool:
        return BATCH in (len(self.prompts), len(self.alarms), len(self.resends))


async def tick(session: AsyncSession, settings: Settings, now: datetime) -> TickResult:
    """What the server's clock says is due at `now`, across organisations, at most one batch of
    each kind. Rows are claimed FOR UPDATE SKIP LOCKED and changed in the same transaction as
    the outbox rows they cause, so however many processes tick, each prompt, alarm and re-send
    happens once (the unique index on `safety_alerts.visit_id` backs the alarm up)."""
    result = TickResult([], [], [])
    grace = timedelta(seconds=settings.lone_working_grace_s)
    for visit in await repository.claim_due_prompts(session, now - grace, BATCH):
        await _prompt(session, settings, visit, now)
        result.prompts.append(visit.id)
    alarm_grace = timedelta(seconds=settings.lone_working_alarm_grace_s)
    for visit in await repository.claim_due_alarms(session, now - alarm_grace, BATCH):
        name = await repository.staff_name(session, visit.worker_id) or "A field worker"
        alert = await _raise(
            session,
            settings,
            values={
                "id": uuid.uuid4(),
                "organisation_id": visit.organisation_id,
                "worker_id": visit.worker_id,
                "visit_id": visit.id,
                "kind": AlertKind.overdue.value,
                "raised_at": now,
                "geofence_id": visit.geofence_id,
                "place_name": await repository.place_name(session, visit.geofence_id),
                **await _last_known(session, visit.organisation_id, visit.worker_id, visit),
            },
            worker_name=name,
            now=now,
        )
        if alert is not None:
            result.alarms.append(alert.id)
    for alert in await repository.claim_due_resends(session, now, BATCH):
        alert.level += 1
        alert.next_send_at = _next_send(settings, alert.level, now)
        name = await repository.staff_name(session, alert.worker_id) or "A field worker"
        sent = await _send_alert(session, settings, alert, name)
        await audit_service.record_system(
            session,
            alert.organisation_id,
            "safety.alert.resend",
            "safety_alert",
            alert.id,
            {"level": alert.level, "recipients": [str(r) for r in sent.recipients]},
        )
        result.resends.append(alert.id)
    await session.flush()
    return result


async def _prompt(
    session: AsyncSession, settings: Settings, visit: LoneVisit, now: datetime
) -> None:
    place = await repository.place_name(session, visit.geofence_id) or "the place"
    due = await _clock(session, settings, visit.organisation_id, visit.due_at)
    payload = NotificationPayload(
        title="Are you OK? Tap to extend",
        body=f"Your visit at {place} was due to end at {due}. "
        "Tap to extend it by 30 minutes, or check out.",
        url=f"/app/#extend={visit.id}",
        tag=f"visit{visit.id.hex[:24]}",
        kind=PROMPT_KIND,
        data={"visit_id": str(visit.id), "action": "extend", "minutes": 30},
    )
    await notifications_service.enqueue_many(
        session,
        [
            Outgoing(
                recipient=Recipient("staff", visit.worker_id, visit.organisation_id),
                payload=payload,
                related={"visit_id": visit.id},
                urgency=Urgency.high,
                ttl_s=max(60, settings.lone_working_alarm_grace_s),
            )
        ],
        settings,
    )
    visit.prompted_at = now
    await audit_service.record_system(
        session,
        visit.organisation_id,
        "safety.visit.prompt",
        "lone_visit",
        visit.id,
        {"worker_id": str(visit.worker_id), "due_at": visit.due_at.isoformat()},
    )


# --- responders --------------------------------------------------------------------------------


async def _check_responder(session: AsyncSession, principal: Principal) -> None:
    if principal.role in (Role.admin, Role.editor):
        return
    if not await repository.is_on_call(session, principal.organisation_id, principal.id):
        raise NotAResponder("Alerts are for admins, editors and the on-call list.")


async def list_alerts(
    session: AsyncSession, principal: Principal, *, open_only: bool, limit: int
) -> list[tuple[SafetyAlert, str | None]]:
    await _check_responder(session, principal)
    rows = await repository.list_alerts(
        session, principal.organisation_id, open_only=open_only, limit=limit
    )
    return [(a, await repository.staff_name(session, a.worker_id)) for a in rows]


async def get_alert(
    session: AsyncSession, principal: Principal, alert_id: uuid.UUID
) -> tuple[SafetyAlert, str | None]:
    await _check_responder(session, principal)
    alert = await repository.get_alert(session, principal.organisation_id, alert_id)
    if alert is None:
        raise AlertNotFound()
    return alert, await repository.staff_name(session, alert.worker_id)


async def acknowledge(
    session: AsyncSession,
    principal: Principal,
    alert_id: uuid.UUID,
    note: str | None,
    *,
    now: datetime,
) -> SafetyAlert:
    """A person takes the alert: the ladder stops. Audited by the router."""
    await _check_responder(session, principal)
    alert = await repository.get_alert(session, principal.organisation_id, alert_id, lock=True)
    if alert is None:
        raise AlertNotFound()
    if alert.worker_id == principal.id:
        raise NotAResponder("Someone else must acknowledge an alert about you.")
    if alert.acknowledged_at is not None:
        raise AlreadyAcknowledged(
            f"Acknowledged at {alert.acknowledged_at.isoformat()}.",
            extra={
                "acknowledged_at": alert.acknowledged_at.isoformat(),
                "acknowledged_by": str(alert.acknowledged_by),
            },
        )
    alert.acknowledged_at = now
    alert.acknowledged_by = principal.id
    alert.ack_note = note
    alert.next_send_at = None
    await session.flush()
    return alert


async def purge(session: AsyncSession, settings: Settings, now: datetime) -> tuple[int, int]:
    """Retention (docs/privacy.md): ended visits after the staff-track period, acknowledged
    alerts after `lone_working_alert_retention_days`; returns (visits, alerts) deleted. Live
    visits and unacknowledged alerts are never deleted."""
    return await repository.purge(
        session,
        visits_ended_before=now - timedelta(days=settings.staff_track_retention_days),
        alerts_acknowledged_before=now - timedelta(days=settings.lone_working_alert_retention_days),
    )


# --- configuration -----------------------------------------------------------------------------


async def on_call(session: AsyncSession, organisation_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    return await repository.on_call(session, organisation_id)


async def set_on_call(
    session: AsyncSession, organisation_id: uuid.UUID, contacts: list[OnCallEntry]
) -> list[tuple[uuid.UUID, int]]:
    ids = [c.staff_id for c in contacts]
    if len(set(ids)) != len(ids):
        raise InvalidOnCall("A person is on the list once.", extra={"field": "contacts"})
    found = await repository.active_staff_ids(session, organisation_id, ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise InvalidOnCall(
            f"Not active staff of your organisation: {', '.join(missing)}.",
            extra={"field": "contacts", "unknown": missing},
        )
    await repository.replace_on_call(
        session, organisation_id, [(c.staff_id, c.rank) for c in contacts]
    )
    return await repository.on_call(session, organisation_id)


async def category_lengths(
    session: AsyncSession, organisation_id: uuid.UUID
) -> list[CategoryVisitLength]:
    return await repository.category_lengths(session, organisation_id)


async def set_category_length(
    session: AsyncSession,
    settings: Settings,
    organisation_id: uuid.UUID,
    category: str,
    minutes: int,
) -> None:
    if category not in geofence_service.allowed_categories(settings):
        raise UnknownCategory(
            f"Unknown place category: {category!r}.",
            extra={"field": "category", "allowed": geofence_service.allowed_categories(settings)},
        )
    await repository.set_category_length(session, organisation_id, category, minutes)


async def delete_category_length(
    session: AsyncSession, organisation_id: uuid.UUID, category: str
) -> None:
    if not await repository.delete_category_length(session, organisation_id, category):
        raise CategoryNotSet()
