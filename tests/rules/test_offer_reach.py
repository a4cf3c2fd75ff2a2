"""Which offer reaches a resident at a place, and how often (issue 21: specificity, told caps
apart from redeem caps). Decisions through `on_events` on recorded check-in events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import Settings
from app.offers.models import Offer, OfferGeofence, OfferRedemption
from app.presence import service as presence_service
from app.presence.models import EventSource, EventType
from app.rules import service as rules_service
from app.rules.models import NotificationPreference, Reason
from app.rules.reasons import RESIDENT, STAFF
from tests.factories import create_organisation, create_resident, create_staff
from tests.presence.helpers import create_circle

# noon UTC: outside the default quiet hours (21-08 Europe/London) whatever the season
NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


class Town:
    def __init__(self, db: AsyncSession, org: Organisation, library: uuid.UUID) -> None:
        self.db, self.organisation, self.org, self.library = db, org, org.id, library
        self.made = 0

    def offer(self, title: str, *, places: list[uuid.UUID] | None = None, **kw: Any) -> Offer:
        self.made += 1
        fields: dict[str, Any] = {
            "organisation_id": self.org,
            "title": title,
            "body": "b",
            "triggers": ["checkin"],
            "status": "active",
            "geofence_links": [OfferGeofence(geofence_id=g) for g in places or []],
            # made in this order, a minute apart
            "created_at": NOON - timedelta(days=30) + timedelta(minutes=self.made),
        }
        fields.update(kw)
        o = Offer(**fields)
        self.db.add(o)
        return o

    async def resident(self) -> uuid.UUID:
        res = await create_resident(self.db, self.organisation)
        self.db.add(
            NotificationPreference(
                organisation_id=self.org, device_id=res.id, time_zone="Europe/London"
            )
        )
        await self.db.flush()
        return res.id

    async def check_in(
        self, settings: Settings, who: uuid.UUID, at: datetime
    ) -> dict[str, tuple[str, str | None]]:
        """A check-in at the library at `at`: each offer's title → (decision, reason)."""
        event = presence_service.event_row(
            organisation_id=self.org,
            geofence_id=self.library,
            type=EventType.checkin,
            source=EventSource.checkin,
            occurred_at=at,
            device_id=who,
            staff_user_id=None,
            explanation={},
        )
        await presence_service.record_events(self.db, [event])
        await rules_service.on_events(self.db, [event], settings=settings, now=at)
        rows = await self.db.execute(
            text(
                "SELECT o.title, d.decision, d.reason FROM notification_decisions d "
                "JOIN offers o ON o.id = d.offer_id WHERE d.presence_event_id = :e"
            ),
            {"e": event["id"]},
        )
        return {r[0]: (r[1], r[2]) for r in rows}


async def town(db: AsyncSession) -> Town:
    org = await create_organisation(db)
    library = await create_circle(
        db, org.id, 0.0, 0.0, 30.0, name="Westfield Library", category="library"
    )
    await db.execute(
        text("UPDATE geofences SET opening_hours = NULL WHERE id = :g"), {"g": library}
    )
    return Town(db, org, library)


async def test_the_place_own_offer_beats_the_category_offer_old_or_new(
    db: AsyncSession, settings: Settings
) -> None:
    t = await town(db)
    t.offer("Opening week: free coffee", places=[t.library])  # older than the category one
    t.offer("Free printing hour at every library", category="library")
    await db.flush()
    who = await t.resident()
    assert await t.check_in(settings, who, NOON) == {
        "Opening week: free coffee": ("queued", None),
        "Free printing hour at every library": ("suppressed", "outranked"),
    }


async def test_equally_specific_offers_go_by_priority_then_newest(
    db: AsyncSession, settings: Settings
) -> None:
    t = await town(db)
    t.offer("Old, priority 5", category="library", priority=5)
    t.offer("Newer, priority 0", category="library")
    t.offer("Newest, priority 0", category="library")
    await db.flush()
    first = await t.resident()
    assert (await t.check_in(settings, first, NOON))["Old, priority 5"] == ("queued", None)

    t2 = await town(db)
    t2.offer("Older", places=[t2.library])
    t2.offer("Newer", places=[t2.library])
    await db.flush()
    second = await t2.resident()
    assert await t2.check_in(settings, second, NOON) == {
        "Newer": ("queued", None),
        "Older": ("suppressed", "outranked"),
    }


async def test_an_outranked_offer_reaches_the_person_on_a_later_visit(
    db: AsyncSession, settings: Settings
) -> None:
    t = await town(db)
    t.offer("Coffee", places=[t.library])
    t.offer("Printing", category="library")
    await db.flush()
    who = await t.resident()
    await t.check_in(settings, who, NOON - timedelta(days=1))
    later = await t.check_in(settings, who, NOON)
    # the coffee was told yesterday (told at most once a week): the printing offer's turn
    assert later == {"Coffee": ("suppressed", "cooldown"), "Printing": ("queued", None)}


async def test_told_defaults_to_once_a_week_and_redeeming_is_a_separate_cap(
    db: AsyncSession, settings: Settings
) -> None:
    t = await town(db)
    coffee = t.offer("Coffee", places=[t.library])  # defaults: told weekly, redeem once
    await db.flush()
    assert (coffee.cooldown_s, coffee.told_max, coffee.max_per_person) == (604_800, None, 1)
    who = await t.resident()
    day = timedelta(days=1)
    seen = [(await t.check_in(settings, who, NOON + k * day))["Coffee"] for k in (0, 3, 7, 8, 14)]
    assert seen == [
        ("queued", None),
        ("suppressed", "cooldown"),  # 3 days later: within the week
        ("queued", None),  # a week later: told again (max_per_person no longer caps pushes)
        ("suppressed", "cooldown"),
        ("queued", None),
    ]
    db.add(OfferRedemption(organisation_id=t.org, offer_id=coffee.id, device_id=who))
    await db.flush()
    assert (await t.check_in(settings, who, NOON + 30 * day))["Coffee"] == (
        "suppressed",
        "redeemed",
    )


async def test_told_max_caps_the_number_of_pushes(db: AsyncSession, settings: Settings) -> None:
    t = await town(db)
    t.offer("Twice", places=[t.library], told_max=2, cooldown_s=3600)
    await db.flush()
    who = await t.resident()
    hour = timedelta(hours=1, minutes=1)
    seen = [(await t.check_in(settings, who, NOON + k * hour))["Twice"] for k in range(3)]
    assert seen == [("queued", None), ("queued", None), ("suppressed", "max_reached")]


async def test_held_back_offers_carry_plain_words_for_the_resident_and_staff(
    db: AsyncSession, settings: Settings
) -> None:
    t = await town(db)
    t.offer("Coffee", places=[t.library])
    t.offer("Printing", category="library")
    await db.flush()
    who = await t.resident()
    await t.check_in(settings, who, NOON)
    inbox = await db.execute(
        text(
            "SELECT title, decision, related->>'reason_text' FROM notifications "
            "WHERE device_id = :d ORDER BY title"
        ),
        {"d": who},
    )
    assert [tuple(r) for r in inbox] == [
        ("Coffee", "send", None),
        ("Printing", "suppressed:outranked", RESIDENT[Reason.outranked]),
    ]
    events = await db.execute(
        text("SELECT id FROM presence_events WHERE device_id = :d"), {"d": who}
    )
    [event_id] = events.scalars().all()
    decided = await rules_service.decisions_for_events(db, t.org, [event_id])
    by_reason = {d["reason"]: d["explanation"] for d in decided[event_id]}
    assert by_reason == {None: "Queued for sending.", "outranked": STAFF[Reason.outranked]}


def test_every_reason_has_words_for_residents_and_staff() -> None:
    assert set(RESIDENT) == set(Reason) == set(STAFF)
    for text_ in [*RESIDENT.values(), *STAFF.values()]:
        assert "_" not in text_
        assert text_.endswith(".")


async def test_the_funnel_counts_every_reason_and_the_push_outcome(
    db: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    t = await town(db)
    coffee = t.offer("Coffee", places=[t.library])
    printing = t.offer("Printing", category="library")
    await db.flush()
    editor = await create_staff(db, settings, t.organisation, Role.editor)
    people = [await t.resident() for _ in range(3)]
    for who in people:
        await t.check_in(settings, who, NOON)
    await t.check_in(settings, people[0], NOON + timedelta(days=1))  # coffee: told yesterday

    got = (await client.get(f"/v1/offers/{printing.id}/funnel", headers=editor.headers)).json()
    assert got["candidates"] == 4
    assert got["queued"] == 1  # people[0]'s second visit
    assert got["held_back"] == [
        {"reason": "outranked", "count": 3, "explanation": STAFF[Reason.outranked]}
    ]
    # nobody here has a push subscription: the queued one stays in the inbox
    assert got["push"] == {
        "delivered": 0,
        "pending": 0,
        "no_subscription": 1,
        "subscription_expired": 0,
        "push_failed": 0,
    }
    got = (await client.get(f"/v1/offers/{coffee.id}/funnel", headers=editor.headers)).json()
    assert (got["candidates"], got["queued"]) == (4, 3)
    assert [(h["reason"], h["count"]) for h in got["held_back"]] == [("cooldown", 1)]

    other = await create_staff(db, settings, await create_organisation(db), Role.editor)
    missing = await client.get(f"/v1/offers/{coffee.id}/funnel", headers=other.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_the_preview_is_a_dry_run_of_a_default_resident_checking_in_now(
    db: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    t = await town(db)
    t.offer("Coffee", places=[t.library])
    t.offer("Printing", category="library", priority=9)
    await db.flush()
    editor = await create_staff(db, settings, t.organisation, Role.editor)

    async def stored() -> tuple[int, ...]:
        counts = await db.execute(
            text(
                "SELECT (SELECT count(*) FROM notification_decisions), "
                "(SELECT count(*) FROM notifications), (SELECT count(*) FROM presence_events)"
            )
        )
        return tuple(counts.one())

    before = await stored()
    r = await client.get(f"/v1/geofences/{t.library}/preview", headers=editor.headers)
    assert r.status_code == 200
    items = r.json()
    assert [(i["title"], i["specificity"]) for i in items] == [
        ("Coffee", "place"),
        ("Printing", "category"),
    ]
    assert items[1]["decision"] == "suppressed"
    assert items[1]["reason"] in {"outranked", "quiet_hours"}  # depends on the hour it runs
    assert all(i["explanation"] for i in items)
    assert await stored() == before
    gone = await client.get(f"/v1/geofences/{uuid.uuid4()}/preview", headers=editor.headers)
    assert gone.status_code == 404
