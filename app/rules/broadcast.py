"""Broadcast: a one-off message to everyone at or near a place now, within their preferences."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.principal import Principal
from app.core.config import Settings
from app.core.errors import NotFound
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.notifications import service as notifications_service
from app.notifications.models import Urgency
from app.notifications.schemas import NotificationPayload
from app.rules import reasons, repository
from app.rules.models import DecisionKind, Reason
from app.rules.schemas import BroadcastCreate
from app.rules.windows import effective_prefs, quiet_until


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
    quiet_end: datetime | None = None
    for kind, pid in people:
        who = SubjectRef.of(kind, pid, org)
        prefs = effective_prefs(settings, kind, prefs_rows.get(pid))
        reason: Reason | None = None
        if not body.safety_critical:
            if place.category in prefs.opted_out:
                reason = Reason.opted_out
            elif kind == "device" and (until := quiet_until(prefs, now)) is not None:
                reason = Reason.quiet_hours
                quiet_end = max(quiet_end or until, until)
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
        "explanations": {k: reasons.for_staff(Reason(k)) for k in suppressed},
        "quiet_hours_end": quiet_end,
        "sent_at": now,
    }
