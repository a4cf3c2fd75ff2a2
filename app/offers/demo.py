"""Demo offers: an evening event at a library, a leisure centre discount, an all-libraries offer.

Attached to the demo places by external id (falling back to any place of the category); when no
such place exists yet the offer is skipped, so this loader must run after the places loader.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.geofences import service as geofence_service
from app.offers import repository, service
from app.offers.schemas import OfferCreate


def _demo_offers(now: datetime) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(external id of the place or None for a category offer, category, offer fields)."""
    until = now + timedelta(days=90)
    return [
        (
            "DEMO-LIB-CENTRAL",
            "library",
            {
                "title": "Author evening at the Central Library",
                "body": "Local crime writer in conversation, 18:00 in the reading room. Free, "
                "drop in — tea and biscuits from 17:30.",
                "url": "https://calderbridge.example/events/author-evening",
                "triggers": ["checkin", "enter", "nearby"],
                "valid_from": now,
                "valid_until": until,
                "time_window": {"start": "16:00", "end": "19:00", "time_zone": "Europe/London"},
                "cooldown_s": 86_400,
                "status": "active",
            },
        ),
        (
            None,
            "leisure_centre",
            {
                "title": "10% off your next swim",
                "body": "Show this at reception for 10% off a swim or gym session today.",
                "triggers": ["checkin", "dwell"],
                "valid_from": now,
                "valid_until": until,
                "max_per_person": 1,
                "max_total": 500,
                "status": "active",
            },
        ),
        (
            None,
            "library",
            {
                "title": "Free printing hour at every library",
                "body": "Print up to 10 pages free at any Calderbridge library this month.",
                "triggers": ["checkin"],
                "valid_from": now,
                "valid_until": until,
                "status": "active",
                "quiet_hours_policy": "defer",
            },
        ),
    ]


async def load_demo_offers(session: AsyncSession, org: Organisation) -> list[str]:
    """Idempotent: an offer whose title already exists in the organisation is left alone."""
    lines: list[str] = []
    for external_id, category, fields in _demo_offers(datetime.now(UTC)):
        if await repository.offer_titled(session, org.id, fields["title"]):
            lines.append(f"offer: {fields['title']} (already there)")
            continue
        place = await geofence_service.find_demo_place(session, org.id, external_id or "", category)
        if place is None:
            lines.append(f"offer skipped (no {category} place yet): {fields['title']}")
            continue
        where = {"geofence_ids": [place.id]} if external_id else {"category": category}
        await service.create_offer(session, org.id, None, OfferCreate(**fields, **where))
        at = place.name if external_id else f"every {category.replace('_', ' ')}"
        lines.append(f"offer: {fields['title']} @ {at}")
    return lines
