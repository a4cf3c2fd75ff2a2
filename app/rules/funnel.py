"""Why did an offer (not) reach people: its funnel from the decision log, and a dry-run preview
of what a resident with default settings checking in at a place now would get. Neither sends
nor stores anything."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import NotFound
from app.core.subject import SubjectRef
from app.rules import reasons, repository
from app.rules.decisions import Ledger, Moment, decide
from app.rules.matching import Person, offer_candidates
from app.rules.models import Reason
from app.rules.windows import effective_prefs, on_shift, quiet_until

PUSH_OUTCOMES = ("delivered", "pending", "no_subscription", "subscription_expired", "push_failed")


async def offer_funnel(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """Every time the offer was a candidate: queued or held back (each reason counted, in staff
    words), and what became of the queued pushes."""
    held: dict[str, int] = {}
    push = dict.fromkeys(PUSH_OUTCOMES, 0)
    candidates = queued = 0
    waits_until: datetime | None = None
    for r in await repository.offer_funnel(session, organisation_id, offer_id, now):
        candidates += r.n
        if r.decision == "queued":
            queued += r.n
            push[r.push] += r.n
            if r.waits_until is not None:
                waits_until = max(waits_until or r.waits_until, r.waits_until)
        else:
            held[r.reason] = held.get(r.reason, 0) + r.n
    return {
        "offer_id": offer_id,
        "candidates": candidates,
        "queued": queued,
        "held_back": [
            {"reason": k, "count": n, "explanation": reasons.for_staff(Reason(k))}
            for k, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "push": push,
        "deferred_until": waits_until,
    }


async def preview_checkin(
    session: AsyncSession,
    settings: Settings,
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """If a new resident with default settings checked in at this place now: each live offer
    there, in competing order, with what would happen and why. A dry run: nothing is stored."""
    now = now or datetime.now(UTC)
    ctx = await repository.context(session, [], [(organisation_id, geofence_id)])
    place = ctx.places.get((organisation_id, geofence_id))
    if place is None:
        raise NotFound("No such place.")
    event = {
        "id": uuid.uuid4(),
        "organisation_id": organisation_id,
        "geofence_id": geofence_id,
        "type": "checkin",
        "occurred_at": now,
    }
    prefs = effective_prefs(settings, "device", None)
    who = SubjectRef("device", uuid.uuid4(), organisation_id)  # nobody: no history
    person = Person(who, [event], prefs=prefs, places={geofence_id: place})
    await offer_candidates(session, [person])
    moment = Moment(
        settings=settings,
        now=now,
        implausible=False,
        prefs=prefs,
        places=person.places,
        quiet_end=quiet_until(prefs, now),
        shift_ok=on_shift(prefs, now),
    )
    ledger = Ledger()
    out = []
    for c in person.candidates:
        reason, deliver_after = decide(c, moment, ledger)
        if reason is None:
            ledger.queue(c, now)
        out.append(
            {
                "offer_id": c.offer.id,
                "title": c.title,
                "specificity": c.offer.specificity,
                "priority": c.offer.priority,
                "decision": "queued" if reason is None else "suppressed",
                "reason": None if reason is None else reason.value,
                "deliver_after": deliver_after,
                "explanation": (
                    reasons.for_staff_queued(deliver_after)
                    if reason is None
                    else reasons.for_staff(reason)
                ),
            }
        )
    return out
