"""Every matcher answers "is this offer live here at t" the same on the edges of its windows.

The rule is `app.offers.predicates` (standing, valid_at, in_daily_window, applies_at_place); its
callers are the check-in offers query and the offers near a place (offers), the notification
candidates (rules, which also return offers ended within a day, to record them as expired), and
the check-in context's `has_offers` (check-ins: without the time conditions, a superset).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.checkins import repository as checkins_repository
from app.offers import repository
from app.offers.models import Offer, OfferGeofence
from app.rules import repository as rules_repository
from tests.factories import create_organisation
from tests.presence.helpers import at as position
from tests.presence.helpers import create_circle

MIDNIGHT = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
JUST_BEFORE = MIDNIGHT - timedelta(microseconds=1)
EVENING = {"window_start": time(18, 0), "window_end": time(0, 0), "time_zone": "UTC"}

# (offer fields, at, live, listed near the place, has_offers)
# the offers near a place do not apply the daily window (they list what is valid today)
CASES = [
    pytest.param({}, MIDNIGHT, True, True, True, id="always"),
    pytest.param({"valid_until": MIDNIGHT}, MIDNIGHT, False, False, True, id="until-exactly-now"),
    pytest.param(
        {"valid_from": MIDNIGHT + timedelta(hours=1)},
        MIDNIGHT,
        False,
        False,
        True,
        id="valid-in-the-future",
    ),
    pytest.param({"valid_from": MIDNIGHT}, MIDNIGHT, True, True, True, id="valid-from-exactly-now"),
    pytest.param(EVENING, JUST_BEFORE, True, True, True, id="window-ends-at-midnight:before"),
    pytest.param(EVENING, MIDNIGHT, False, True, True, id="window-ends-at-midnight:at-midnight"),
    pytest.param({"status": "paused"}, MIDNIGHT, False, False, False, id="paused"),
]


@pytest.mark.parametrize(("fields", "at", "live", "listed", "has_offers"), CASES)
async def test_every_matcher_agrees_whether_an_offer_is_live_here(
    db: AsyncSession,
    fields: dict[str, Any],
    at: datetime,
    live: bool,
    listed: bool,
    has_offers: bool,
) -> None:
    org = await create_organisation(db)
    gid = await create_circle(db, org.id, 0.0, 0.0, 30.0)
    columns: dict[str, Any] = {
        "organisation_id": org.id,
        "title": "Edge",
        "body": "b",
        "triggers": ["checkin"],
        "status": "active",
        "cooldown_s": 0,
        "max_per_person": 10,
        "geofence_links": [OfferGeofence(geofence_id=gid)],
    }
    offer = Offer(**{**columns, **fields})
    db.add(offer)
    await db.flush()
    lon, lat = position(0.0, 0.0)
    audiences = ["residents", "all"]

    matched = await repository.matching_offers(
        db,
        organisation_id=org.id,
        geofence_id=gid,
        category="library",
        trigger="checkin",
        at=at,
        audiences=audiences,
        place_open=True,
    )
    near = await repository.public_offers_near(
        db, organisation_id=org.id, audiences=audiences, at=at, limit=5, geofence_id=gid
    )
    key = rules_repository.OfferKey(0, org.id, uuid.uuid4(), "residents", gid, "x", "checkin", at)
    candidates = await rules_repository.offer_candidates(db, [key])
    context = await checkins_repository.context(
        db,
        organisation_id=org.id,
        subject_kind="device",
        subject_id=uuid.uuid4(),
        lon=lon,
        lat=lat,
        at=at,
        geofence_id=gid,
        max_reach_m=100.0,
        cooldown_since=at - timedelta(minutes=10),
    )

    assert [o.id for o in matched] == ([offer.id] if live else [])
    # the rules also see an offer that ended within the last day, and record it as expired
    rules_live = [c.id for c in candidates if c.valid_until is None or c.valid_until > at]
    assert rules_live == ([offer.id] if live else [])
    assert [o.id for o, _ in near] == ([offer.id] if listed else [])
    assert [c.has_offers for c in context.places] == [has_offers]
    assert has_offers or not live  # the check-in's shortcut never hides a live offer
