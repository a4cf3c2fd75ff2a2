"""Why a notification was held back, in words: one sentence for the resident, one for staff.

The codes (`Reason`) stay in the data and the API; these sentences go with them where people
read them: the inbox entry (`related.reason_text`, written when the decision is recorded) and
the staff view of an event's decisions (`explanation`).
"""

from __future__ import annotations

from datetime import datetime

from app.rules.models import Reason

RESIDENT: dict[Reason, str] = {
    Reason.quiet_hours: "It arrived during your quiet hours, so we kept it in your inbox.",
    Reason.budget: "You've had your notifications for today, so we kept this one in your inbox.",
    Reason.cooldown: "We told you about this recently, so we didn't notify you again.",
    Reason.opted_out: "You've turned off notifications for this kind of place.",
    Reason.closed: "The place was closed at the time.",
    Reason.implausible_jump: "Your location jumped too far too fast, so we didn't act on it.",
    Reason.not_on_shift: "You weren't on shift at the time.",
    Reason.expired: "The offer had ended.",
    Reason.max_reached: "We've told you about this as often as it allows.",
    Reason.outranked: "Another offer for this place was sent instead; this one is still here.",
    Reason.redeemed: "You've already used this offer.",
    Reason.stale: "Your phone sent this location late, so it was too old to act on.",
    Reason.no_subscription: "Notifications aren't switched on in this app.",
}

STAFF: dict[Reason, str] = {
    Reason.quiet_hours: "Held back: the person's quiet hours (the offer drops, not defers).",
    Reason.budget: "Held back: the person reached their daily notification limit.",
    Reason.cooldown: "Held back: told about this offer (or pushed at this place) too recently.",
    Reason.opted_out: "Held back: the person opted out of this category.",
    Reason.closed: "Held back: the place was closed and the offer is not for outside hours.",
    Reason.implausible_jump: "Held back: the position implied an impossible speed.",
    Reason.not_on_shift: "Held back: the field worker was not on shift.",
    Reason.expired: "Held back: the offer had ended (or ends before quiet hours do).",
    Reason.max_reached: "Held back: the told cap or the offer's total redemptions are used up.",
    Reason.outranked: "Lost to a more specific, higher-priority or newer offer at this place.",
    Reason.redeemed: "Held back: the person has redeemed it as often as it allows.",
    Reason.stale: "Held back: the event reached the server too late to act on.",
    Reason.no_subscription: "Not pushed: the person has no push subscription.",
}


def for_resident(reason: Reason) -> str:
    return RESIDENT[reason]


def for_staff(reason: Reason) -> str:
    return STAFF[reason]


def for_staff_queued(deliver_after: datetime | None) -> str:
    if deliver_after is None:
        return "Queued for sending."
    return f"Queued; held until the person's quiet hours end ({deliver_after:%Y-%m-%d %H:%M} UTC)."
