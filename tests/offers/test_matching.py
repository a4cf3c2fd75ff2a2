"""`matching_offers` / `offers_for_checkin`: place, trigger, windows, time zones, audience."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.geofences.models import Geofence
from app.offers import service
from app.offers.schemas import OfferCreate
from tests.offers.helpers import Town


async def make_offer(db: AsyncSession, town: Town, **fields: Any) -> str:
    data: dict[str, Any] = {
        "title": fields.pop("title", "Offer"),
        "body": "Something nice",
        "geofence_ids": [town.library],
        "triggers": ["checkin"],
        "status": "active",
    }
    data.update(fields)
    offer = await service.create_offer(db, town.org_id, town.editor.id, OfferCreate(**data))
    return offer.title


async def titles_at(
    db: AsyncSession,
    town: Town,
    at: datetime,
    *,
    place: Any = None,
    trigger: str = "checkin",
    audience: str = "residents",
    place_open: bool = True,
) -> list[str]:
    geofence = await db.get(Geofence, place or town.library)
    assert geofence is not None
    if trigger == "checkin":
        found = await service.offers_for_checkin(
            db,
            organisation_id=town.org_id,
            geofence=geofence,
            at=at,
            audience=audience,
            place_open=place_open,
        )
    else:
        found = await service.matching_offers(
            db,
            organisation_id=town.org_id,
            geofence=geofence,
            trigger=trigger,
            at=at,
            audience=audience,
            place_open=place_open,
        )
    return sorted(o.title for o in found)


WINTER = datetime(2026, 1, 15, tzinfo=UTC)  # London = UTC
SUMMER = datetime(2026, 7, 15, tzinfo=UTC)  # London = UTC+1 (BST)
EVENING = {"start": "17:00", "end": "20:00", "time_zone": "Europe/London"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (WINTER.replace(hour=16, minute=59), False),
        (WINTER.replace(hour=17), True),  # start is inclusive
        (WINTER.replace(hour=19, minute=30), True),
        (WINTER.replace(hour=20), False),  # end is exclusive
        # BST: 16:30 UTC is 17:30 in London, 19:30 UTC is 20:30 in London
        (SUMMER.replace(hour=16, minute=30), True),
        (SUMMER.replace(hour=19, minute=30), False),
        (SUMMER.replace(hour=15, minute=59), False),
    ],
)
async def test_time_of_day_window_is_local_time_across_dst(
    db: AsyncSession, town: Town, at: datetime, expected: bool
) -> None:
    await make_offer(db, town, title="Evening", time_window=EVENING)
    assert (await titles_at(db, town, at)) == (["Evening"] if expected else [])


@pytest.mark.parametrize(
    ("local_hour", "local_minute", "expected"),
    [(21, 59, False), (22, 0, True), (23, 30, True), (0, 0, True), (1, 59, True), (2, 0, False)],
)
async def test_time_of_day_window_may_cross_midnight(
    db: AsyncSession, town: Town, local_hour: int, local_minute: int, expected: bool
) -> None:
    await make_offer(
        db,
        town,
        title="Late",
        time_window={"start": "22:00", "end": "02:00", "time_zone": "Europe/London"},
    )
    # 16 July: BST, so local = UTC + 1 hour
    local = datetime(2026, 7, 16, local_hour, local_minute, tzinfo=UTC)
    at = local - timedelta(hours=1)
    assert (await titles_at(db, town, at)) == (["Late"] if expected else [])


async def test_window_on_the_dst_change_night(db: AsyncSession, town: Town) -> None:
    """On 29 March 2026 London skips 01:00–02:00: 00:30 UTC is 00:30 GMT, 01:30 UTC is 02:30 BST."""
    await make_offer(
        db,
        town,
        title="Night",
        time_window={"start": "00:00", "end": "02:00", "time_zone": "Europe/London"},
    )
    assert await titles_at(db, town, datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == ["Night"]
    assert await titles_at(db, town, datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) == ["Night"]
    assert await titles_at(db, town, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) == []


async def test_window_in_another_time_zone(db: AsyncSession, town: Town) -> None:
    await make_offer(
        db,
        town,
        title="NY breakfast",
        time_window={"start": "08:00", "end": "10:00", "time_zone": "America/New_York"},
    )
    # 13:30 UTC in January is 08:30 in New York (UTC-5)
    assert await titles_at(db, town, WINTER.replace(hour=13, minute=30)) == ["NY breakfast"]
    assert await titles_at(db, town, WINTER.replace(hour=8, minute=30)) == []


async def test_validity_window_from_inclusive_until_exclusive(db: AsyncSession, town: Town) -> None:
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    end = datetime(2026, 5, 8, 9, tzinfo=UTC)
    await make_offer(db, town, title="Week", valid_from=start, valid_until=end)
    assert await titles_at(db, town, start - timedelta(seconds=1)) == []
    assert await titles_at(db, town, start) == ["Week"]
    assert await titles_at(db, town, end - timedelta(seconds=1)) == ["Week"]
    assert await titles_at(db, town, end) == []


async def test_validity_with_offsets_compares_instants(db: AsyncSession, town: Town) -> None:
    start = datetime.fromisoformat("2026-05-01T10:00:00+02:00")  # 08:00 UTC
    await make_offer(db, town, title="Paris", valid_from=start)
    assert await titles_at(db, town, datetime(2026, 5, 1, 7, 59, tzinfo=UTC)) == []
    assert await titles_at(db, town, datetime(2026, 5, 1, 8, 0, tzinfo=UTC)) == ["Paris"]


async def test_category_offer_applies_at_every_place_of_that_category(
    db: AsyncSession, town: Town
) -> None:
    await make_offer(db, town, title="All libraries", geofence_ids=[], category="library")
    await make_offer(db, town, title="Park only", geofence_ids=[town.park])
    at = WINTER.replace(hour=12)
    assert await titles_at(db, town, at, place=town.library) == ["All libraries"]
    assert await titles_at(db, town, at, place=town.library2) == ["All libraries"]
    assert await titles_at(db, town, at, place=town.park) == ["Park only"]
    assert await titles_at(db, town, at, place=town.leisure) == []


async def test_places_and_category_together_are_a_union(db: AsyncSession, town: Town) -> None:
    await make_offer(db, town, title="Both", geofence_ids=[town.park], category="library")
    at = WINTER.replace(hour=12)
    for place in (town.park, town.library, town.library2):
        assert await titles_at(db, town, at, place=place) == ["Both"]
    assert await titles_at(db, town, at, place=town.leisure) == []


async def test_only_the_requested_trigger_matches(db: AsyncSession, town: Town) -> None:
    await make_offer(db, town, title="Checkin", triggers=["checkin"])
    await make_offer(db, town, title="Passing", triggers=["nearby", "enter"])
    at = WINTER.replace(hour=12)
    assert await titles_at(db, town, at) == ["Checkin"]
    assert await titles_at(db, town, at, trigger="nearby") == ["Passing"]
    assert await titles_at(db, town, at, trigger="dwell") == []
    with pytest.raises(ValueError, match="unknown trigger"):
        await titles_at(db, town, at, trigger="teleport")


async def test_closed_place_only_gets_offers_marked_outside_opening_hours_ok(
    db: AsyncSession, town: Town
) -> None:
    await make_offer(db, town, title="Open hours")
    await make_offer(db, town, title="Any time", outside_opening_hours_ok=True)
    at = WINTER.replace(hour=12)
    assert await titles_at(db, town, at) == ["Any time", "Open hours"]
    assert await titles_at(db, town, at, place_open=False) == ["Any time"]


async def test_audience_and_status(db: AsyncSession, town: Town) -> None:
    await make_offer(db, town, title="Residents")
    await make_offer(db, town, title="Staff", audience="staff")
    await make_offer(db, town, title="All", audience="all")
    await make_offer(db, town, title="Draft", status="draft")
    await make_offer(db, town, title="Paused", status="paused")
    await make_offer(db, town, title="Ended", status="ended")
    at = WINTER.replace(hour=12)
    assert await titles_at(db, town, at) == ["All", "Residents"]
    assert await titles_at(db, town, at, audience="staff") == ["All", "Staff"]
    assert await titles_at(db, town, at, audience="all") == ["All", "Residents", "Staff"]


async def test_deleted_and_other_organisations_offers_never_match(
    db: AsyncSession, town: Town
) -> None:
    await make_offer(db, town, title="Deleted")
    offers, _ = await service.list_offers(db, town.org_id, _page())
    await service.delete_offer(db, town.org_id, offers[0].id)
    other = await db.get(Geofence, town.other_library)
    assert other is not None
    found = await service.offers_for_checkin(
        db,
        organisation_id=other.organisation_id,
        geofence=other,
        at=WINTER,
        audience="residents",
        place_open=True,
    )
    assert found == []
    assert await titles_at(db, town, WINTER) == []


async def test_naive_time_is_refused(db: AsyncSession, town: Town) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await titles_at(db, town, datetime(2026, 1, 1, 12))


def _page() -> Any:
    from app.core.pagination import PageParams

    return PageParams(limit=50, cursor=None)
