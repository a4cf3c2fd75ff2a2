"""All SQL for check-ins, including the PostGIS resolution of a point against places."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import and_, func, literal_column, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.checkins.models import CheckIn
from app.core.db import driver_connection, integrity_error, render_sql
from app.core.pagination import PageParams
from app.events.types import EventType
from app.geofences.models import Geofence
from app.geofences.predicates import active_at
from app.offers import predicates as offer_predicates
from app.offers.models import Offer, Trigger
from app.webhooks import predicates as webhook_predicates
from app.webhooks.models import WebhookEndpoint


@dataclass(frozen=True)
class Place:
    """What a check-in needs of a place (never its geometry)."""

    id: uuid.UUID
    name: str
    category: str
    trigger_distance_m: float
    opening_hours: dict[str, Any] | None


@dataclass
class Candidate:
    geofence: Place
    inside: bool
    distance_m: float
    area_m2: float
    # a superset test of "some active offer with the checkin trigger is listed for this place or
    # its category": when false, neither the offers query nor the notification rules can match
    has_offers: bool = False


@dataclass(frozen=True)
class CheckInRow:
    """A stored check-in as the API returns it (the fields of `CheckInRead`)."""

    id: uuid.UUID
    geofence_id: uuid.UUID
    device_id: uuid.UUID | None
    staff_user_id: uuid.UUID | None
    lon: float
    lat: float
    accuracy_m: float
    recorded_at: datetime
    distance_m: float
    inside: bool
    place_open: bool
    implausible_jump: bool
    created_at: datetime


@dataclass(frozen=True)
class Fix:
    id: uuid.UUID | None
    lon: float
    lat: float
    accuracy_m: float
    recorded_at: datetime


@dataclass
class Context:
    """Everything a check-in decides on, read in one statement.

    `places`: the named place, or the places within `max_reach_m` (nearest first, at most 10);
    `recent`: per place, the person's latest check-in there since the cooldown began;
    `previous_checkin` / `last_ping`: the person's previous check-in and last good ping fix.
    """

    places: list[Candidate]
    recent: dict[uuid.UUID, CheckInRow]
    previous_checkin: Fix | None
    last_ping: Fix | None
    # some enabled webhook endpoint wants this check-in's event (its hook will write)
    webhooks: bool = False


# -- the check-in hot path ---------------------------------------------------------------------
# Two fixed statements run on the request's asyncpg connection (prepared once per connection):
# CONTEXT reads the place(s), the cooldown check-in, the previous fix and whether any offer could
# apply; WRITE inserts the check-in and its `checkin` event. Like the rules' candidate queries,
# CONTEXT reads other domains' tables read-only (geofences, offers, presence_subjects: the
# presence service's `last_fix`), and WRITE inserts the row `presence_service.event_row` builds
# into the shared event log (what `presence_service.record_events` does), so that a check-in
# costs two round trips instead of nine.

_POINT = "ST_SetSRID(ST_MakePoint($1::float8, $2::float8), 4326)"
_PLACE_FILTER = {
    "named": "g.id = $5::uuid",
    "nearest": f"ST_DWithin(g.geog, {_POINT}::geography, $5::float8)",
}
_SUBJECT = {"device": "device_id", "staff": "staff_user_id"}
_CONTEXT = """
WITH places AS MATERIALIZED (
    SELECT g.id, g.name, g.category, g.trigger_distance_m, g.opening_hours,
           ST_Intersects(g.geom, {point}) AS inside,
           ST_Distance(g.geog, {point}::geography) AS distance_m,
           ST_Area(g.geog) AS area_m2
    FROM geofences g
    WHERE g.organisation_id = $3::uuid AND g.deleted_at IS NULL
      AND {active}
      AND {place_filter}
    ORDER BY distance_m, area_m2
    LIMIT 10
), recent AS (
    SELECT DISTINCT ON (c.geofence_id) c.geofence_id, c.id, c.device_id, c.staff_user_id,
           c.lon, c.lat, c.accuracy_m, c.recorded_at, c.distance_m, c.inside, c.place_open,
           c.implausible_jump, c.created_at
    FROM checkins c
    WHERE c.{subject} = $6::uuid AND c.recorded_at >= $7::timestamptz
      AND c.geofence_id IN (SELECT id FROM places)
    ORDER BY c.geofence_id, c.recorded_at DESC
), prev AS (
    SELECT c.id, c.lon, c.lat, c.accuracy_m, c.recorded_at
    FROM checkins c
    WHERE c.{subject} = $6::uuid AND c.recorded_at <= $4::timestamptz
    ORDER BY c.recorded_at DESC
    LIMIT 1
), fix AS (
    SELECT s.last_fix_at, s.last_lon, s.last_lat, s.last_accuracy_m
    FROM presence_subjects s
    WHERE s.subject_id = $6::uuid
)
SELECT p.id, p.name, p.category, p.trigger_distance_m, p.opening_hours, p.inside,
       p.distance_m, p.area_m2,
       EXISTS (
           SELECT 1 FROM offers o
           WHERE o.organisation_id = $3::uuid AND {has_offer}
       ) AS has_offers,
       EXISTS (
           SELECT 1 FROM webhook_endpoints w
           WHERE w.organisation_id = $3::uuid AND {has_webhook}
       ) AS has_webhooks,
       r.id AS r_id, r.device_id AS r_device_id, r.staff_user_id AS r_staff_user_id,
       r.lon AS r_lon, r.lat AS r_lat, r.accuracy_m AS r_accuracy_m,
       r.recorded_at AS r_recorded_at, r.distance_m AS r_distance_m, r.inside AS r_inside,
       r.place_open AS r_place_open, r.implausible_jump AS r_implausible_jump,
       r.created_at AS r_created_at,
       prev.id AS prev_id, prev.lon AS prev_lon, prev.lat AS prev_lat,
       prev.accuracy_m AS prev_accuracy_m, prev.recorded_at AS prev_recorded_at,
       fix.last_fix_at, fix.last_lon, fix.last_lat, fix.last_accuracy_m
FROM places p
LEFT JOIN recent r ON r.geofence_id = p.id
LEFT JOIN prev ON true
LEFT JOIN fix ON true
ORDER BY p.distance_m, p.area_m2
"""
# the place is active at the check-in's time, by the rule every place query shares
_G = Geofence.__table__.alias("g")
_ACTIVE = render_sql(
    active_at(_G.c.active_from, _G.c.active_until, literal_column("$4::timestamptz"))
)
# the reduced "live here" of the offers (app.offers.predicates) without the time conditions: a
# superset of what both the offers query (valid now) and the rules (ended within a day) match
_O = Offer.__table__.alias("o")
_HAS_OFFER = render_sql(
    and_(
        offer_predicates.standing(_O),
        offer_predicates.has_trigger(_O, Trigger.checkin.value),
        offer_predicates.applies_at_place(_O, literal_column("p.id"), literal_column("p.category")),
    ),
    _O,
)
# an enabled webhook endpoint of the organisation wants `checkin.created` (app.webhooks.predicates)
_W = WebhookEndpoint.__table__.alias("w")
_HAS_WEBHOOK = render_sql(webhook_predicates.wants(_W, EventType.checkin_created.value), _W)
CONTEXT_SQL = {
    (resolution, kind): _CONTEXT.format(
        point=_POINT,
        place_filter=_PLACE_FILTER[resolution],
        subject=_SUBJECT[kind],
        active=_ACTIVE,
        has_offer=_HAS_OFFER,
        has_webhook=_HAS_WEBHOOK,
    )
    for resolution in _PLACE_FILTER
    for kind in _SUBJECT
}

WRITE_SQL = """
WITH c AS (
    INSERT INTO checkins (id, organisation_id, device_id, staff_user_id, geofence_id, lon, lat,
                          accuracy_m, recorded_at, distance_m, inside, place_open,
                          implausible_jump, explanation)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING created_at
), e AS (
    INSERT INTO presence_events ({event_columns})
    VALUES ({event_values})
)
SELECT created_at FROM c
"""
# the event's columns are whatever `presence_service.event_row` returns (in its order)
_EVENT_COLUMNS = (
    "id, organisation_id, geofence_id, type, source, occurred_at, device_id, staff_user_id, "
    "ping_id, checkin_id, lon, lat, accuracy_m, explanation, suppressed_reason"
).split(", ")
_WRITE = WRITE_SQL.format(
    event_columns=", ".join(_EVENT_COLUMNS),
    event_values=", ".join(f"${i}" for i in range(15, 15 + len(_EVENT_COLUMNS))),
)


def _fix(at: datetime | None, ref: uuid.UUID | None, lon: Any, lat: Any, acc: Any) -> Fix | None:
    if at is None:
        return None
    return Fix(ref, float(lon), float(lat), float(acc), at)


async def context(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    subject_kind: str,
    subject_id: uuid.UUID,
    lon: float,
    lat: float,
    at: datetime,
    geofence_id: uuid.UUID | None,
    max_reach_m: float,
    cooldown_since: datetime,
) -> Context:
    """One round trip: the place(s), the cooldown check-in, the previous fixes, offers or not."""
    resolution = "named" if geofence_id is not None else "nearest"
    sql = CONTEXT_SQL[(resolution, subject_kind)]
    # a read: it needs no transaction of its own (inside one, it joins it)
    driver = await driver_connection(session, transaction=False)
    rows = await driver.fetch(
        sql,
        lon,
        lat,
        organisation_id,
        at,
        geofence_id if geofence_id is not None else max_reach_m,
        subject_id,
        cooldown_since,
    )
    out = Context([], {}, None, None)
    for r in rows:
        place = Place(r[0], r[1], r[2], r[3], r[4])
        out.places.append(Candidate(place, bool(r[5]), float(r[6]), float(r[7]), bool(r[8])))
        if r["r_id"] is not None:
            out.recent[place.id] = CheckInRow(
                r["r_id"],
                place.id,
                r["r_device_id"],
                r["r_staff_user_id"],
                r["r_lon"],
                r["r_lat"],
                r["r_accuracy_m"],
                r["r_recorded_at"],
                r["r_distance_m"],
                r["r_inside"],
                r["r_place_open"],
                r["r_implausible_jump"],
                r["r_created_at"],
            )
    if rows:
        r = rows[0]
        out.webhooks = bool(r["has_webhooks"])
        out.previous_checkin = _fix(
            r["prev_recorded_at"],
            r["prev_id"],
            r["prev_lon"],
            r["prev_lat"],
            r["prev_accuracy_m"],
        )
        out.last_ping = _fix(
            r["last_fix_at"], None, r["last_lon"], r["last_lat"], r["last_accuracy_m"]
        )
    return out


async def add_with_event(
    session: AsyncSession, checkin: dict[str, Any], event: dict[str, Any], *, more_to_come: bool
) -> datetime:
    """Insert the check-in and its event in one statement; returns the check-in's created_at.

    `more_to_come=False`: nothing else in the request writes, so the statement may commit on its
    own (one round trip, no BEGIN/COMMIT; it is atomic by itself). `True`: it opens the request's
    transaction, so what follows (proof of visit, notification decisions) commits with it.
    """
    if list(event) != _EVENT_COLUMNS:  # pragma: no cover - guards a change of event_row
        raise RuntimeError("presence event columns changed; update checkins.repository")
    args = [
        checkin["id"],
        checkin["organisation_id"],
        checkin["device_id"],
        checkin["staff_user_id"],
        checkin["geofence_id"],
        checkin["lon"],
        checkin["lat"],
        checkin["accuracy_m"],
        checkin["recorded_at"],
        checkin["distance_m"],
        checkin["inside"],
        checkin["place_open"],
        checkin["implausible_jump"],
        json.dumps(checkin["explanation"]),
    ]
    args += [json.dumps(v) if k == "explanation" else v for k, v in event.items()]
    if more_to_come:
        # through SQLAlchemy: it sends BEGIN with the statement when the request has none yet
        conn = await session.connection()
        created: datetime = (await conn.exec_driver_sql(_WRITE, tuple(args))).scalar_one()
        return created
    driver = await driver_connection(session, transaction=False)
    try:
        created = await driver.fetchval(_WRITE, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise integrity_error(exc, _WRITE) from exc
    return created


async def get(
    session: AsyncSession, organisation_id: uuid.UUID, checkin_id: uuid.UUID
) -> CheckIn | None:
    stmt = select(CheckIn).where(
        CheckIn.id == checkin_id, CheckIn.organisation_id == organisation_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _subject(device_id: uuid.UUID | None, staff_user_id: uuid.UUID | None) -> Any:
    if device_id is not None:
        return CheckIn.device_id == device_id
    return CheckIn.staff_user_id == staff_user_id


async def list_for_subject(
    session: AsyncSession,
    *,
    device_id: uuid.UUID | None,
    staff_user_id: uuid.UUID | None,
    page: PageParams,
) -> list[CheckIn]:
    stmt = select(CheckIn).where(_subject(device_id, staff_user_id))
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(CheckIn.created_at, CheckIn.id) < (page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(CheckIn.created_at.desc(), CheckIn.id.desc()).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())


async def stats(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    *,
    bucket: str,
    since: datetime,
    until: datetime,
    tz: str,
) -> list[tuple[datetime, int, int, int, int]]:
    """Per bucket: (start, resident check-ins, distinct residents, staff check-ins, distinct
    staff).

    The window is widened to whole buckets first: otherwise two windows a few minutes apart,
    each cell above the suppression threshold, would differ by the check-ins of those minutes.
    """
    since, until = (
        await session.execute(
            text(
                "WITH w AS (SELECT timezone(:tz, CAST(:since AS timestamptz)) AS s, "
                "timezone(:tz, CAST(:until AS timestamptz)) AS u) "
                "SELECT timezone(:tz, date_trunc(:bucket, s)), "
                "timezone(:tz, date_trunc(:bucket, u) + CASE WHEN date_trunc(:bucket, u) = u "
                "THEN interval '0' ELSE CAST('1 ' || :bucket AS interval) END) FROM w"
            ),
            {"tz": tz, "bucket": bucket, "since": since, "until": until},
        )
    ).one()
    local = func.timezone(tz, CheckIn.recorded_at)
    start = func.timezone(tz, func.date_trunc(bucket, local)).label("bucket")
    stmt = (
        select(
            start,
            func.count(CheckIn.device_id),
            func.count(func.distinct(CheckIn.device_id)),
            func.count(CheckIn.staff_user_id),
            func.count(func.distinct(CheckIn.staff_user_id)),
        )
        .where(
            CheckIn.organisation_id == organisation_id,
            CheckIn.geofence_id == geofence_id,
            CheckIn.recorded_at >= since,
            CheckIn.recorded_at < until,
        )
        .group_by(start)
        .order_by(start)
    )
    live = {r[0]: [r[1], r[2], r[3], r[4]] for r in (await session.execute(stmt)).all()}
    # Check-ins past their identifiable period survive as hourly counts (privacy purge). An hour
    # is either aggregated or not, so adding is exact for hour buckets; for day buckets the
    # busiest hour's people is used (a lower bound: suppression stays on the safe side).
    aggregated = await session.execute(
        text(
            "SELECT timezone(:tz, date_trunc(:bucket, timezone(:tz, hour))) AS b, "
            "sum(checkins) FILTER (WHERE subject_kind = 'device'), "
            "max(people) FILTER (WHERE subject_kind = 'device'), "
            "sum(checkins) FILTER (WHERE subject_kind = 'staff'), "
            "max(people) FILTER (WHERE subject_kind = 'staff') "
            "FROM checkin_counts WHERE organisation_id = :o AND geofence_id = :g "
            "AND hour >= :since AND hour < :until GROUP BY 1"
        ),
        {"tz": tz, "bucket": bucket, "o": organisation_id, "g": geofence_id}
        | {"since": since, "until": until},
    )
    for b, *counts in aggregated.all():
        row = live.setdefault(b, [0, 0, 0, 0])
        for i, value in enumerate(counts):
            row[i] += int(value or 0)
    return [(b, r[0], r[1], r[2], r[3]) for b, r in sorted(live.items())]


async def regulars(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    *,
    since: datetime,
    min_checkins: int,
) -> list[tuple[uuid.UUID | None, int]]:
    """Devices with at least `min_checkins` check-ins at the place since `since`, most first."""
    n = func.count().label("n")
    stmt = (
        select(CheckIn.device_id, n)
        .where(
            CheckIn.organisation_id == organisation_id,
            CheckIn.geofence_id == geofence_id,
            CheckIn.device_id.is_not(None),
            CheckIn.recorded_at >= since,
        )
        .group_by(CheckIn.device_id)
        .having(func.count() >= min_checkins)
        .order_by(n.desc())
    )
    return [(r[0], int(r[1])) for r in (await session.execute(stmt)).all()]
