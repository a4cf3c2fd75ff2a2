"""Every query that asks "is this place active at t" answers the same on the window's edges.

The rule is `app.geofences.predicates.active_at` (from inclusive, until exclusive); its callers
are the list filter and resolve (geofences), the offers near a place (offers), the check-in
context (check-ins), and the Python twin `service.is_active` for a loaded row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.checkins import repository as checkins_repository
from app.core.pagination import PageParams
from app.geofences import repository, service
from app.geofences.models import Geofence
from app.offers import repository as offers_repository
from app.offers.models import Offer, OfferGeofence
from tests.factories import create_organisation
from tests.presence.helpers import at as position
from tests.presence.helpers import create_circle

MIDNIGHT = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
JUST_BEFORE = MIDNIGHT - timedelta(microseconds=1)
AUDIENCES = ["residents", "staff", "all"]

# (active_from, active_until, at, active)
CASES = [
    pytest.param(None, None, MIDNIGHT, True, id="always"),
    pytest.param(None, MIDNIGHT, JUST_BEFORE, True, id="closes-at-midnight:just-before"),
    pytest.param(None, MIDNIGHT, MIDNIGHT, False, id="closes-at-midnight:at-midnight"),
    pytest.param(MIDNIGHT + timedelta(hours=1), None, MIDNIGHT, False, id="active-in-the-future"),
    pytest.param(MIDNIGHT, None, MIDNIGHT, True, id="becomes-active-exactly-now"),
    pytest.param(MIDNIGHT - timedelta(days=1), MIDNIGHT, MIDNIGHT, False, id="until-exactly-now"),
]


async def _answers(db: AsyncSession, place: Geofence, at: datetime) -> dict[str, bool]:
    org = place.organisation_id
    lon, lat = position(0.0, 0.0)
    page = PageParams(limit=50, cursor=None)
    listed = await repository.list_geofences(
        db, org, page, repository.ListFilters(active=True, at=at)
    )
    not_listed = await repository.list_geofences(
        db, org, page, repository.ListFilters(active=False, at=at)
    )
    resolved = await repository.resolve(db, org, lon, lat, 10.0, at)
    offers = await offers_repository.public_offers_near(
        db,
        organisation_id=org,
        audiences=["residents", "all"],
        at=at,
        limit=5,
        geofence_id=place.id,
    )
    context = await checkins_repository.context(
        db,
        organisation_id=org,
        subject_kind="device",
        subject_id=uuid.uuid4(),
        lon=lon,
        lat=lat,
        at=at,
        geofence_id=place.id,
        max_reach_m=100.0,
        cooldown_since=at - timedelta(minutes=10),
    )
    return {
        "service.is_active": service.is_active(place, at),
        "repository.list_geofences(active=True)": [g.id for g in listed] == [place.id],
        "repository.list_geofences(active=False)": place.id not in [g.id for g in not_listed],
        "repository.resolve": [p.id for p, _, _ in resolved] == [place.id],
        "offers.public_offers_near": len(offers) == 1,
        "checkins.context": [c.geofence.id for c in context.places] == [place.id],
    }


@pytest.mark.parametrize(("active_from", "active_until", "at", "active"), CASES)
async def test_every_caller_agrees_whether_a_place_is_active(
    db: AsyncSession,
    active_from: datetime | None,
    active_until: datetime | None,
    at: datetime,
    active: bool,
) -> None:
    org = await create_organisation(db)
    gid = await create_circle(
        db, org.id, 0.0, 0.0, 30.0, active_from=active_from, active_until=active_until
    )
    db.add(
        Offer(
            organisation_id=org.id,
            title="Always on",
            body="b",
            triggers=["checkin"],
            status="active",
            cooldown_s=0,
            max_per_person=10,
            geofence_links=[OfferGeofence(geofence_id=gid)],
        )
    )
    await db.flush()
    place = await db.get(Geofence, gid)
    assert place is not None

    answers = await _answers(db, place, at)

    assert answers == dict.fromkeys(answers, active)
