"""When an offer is live, and where it applies: the SQL expressions every matcher is built from.

Each function takes the offers table (or an alias of it) and the time, so the ORM queries of
`offers/repository.py` pass `Offer.__table__` and a datetime, and the raw asyncpg statements of
`rules/repository.py` (notification candidates) and `checkins/repository.py` (whether a place has
any check-in offer) render them (`app.core.db.render_sql`) over their alias `o` and their own
columns or placeholders.

- `standing`: active and not deleted.
- `valid_at`: inside `valid_from` (inclusive) .. `valid_until` (exclusive); the rules look one
  day further back (`ended_within_days=1`) so that they can record an offer as `expired`.
- `in_daily_window`: the local wall-clock window in the offer's time zone (end before start
  crosses midnight; end is exclusive).
- `live_at` = standing + valid_at + in_daily_window: "this offer is live now".
- `applies_at_place`: listed for the place, or for its category: "here".
- `has_trigger`: the event kind is one of the offer's triggers.

Who sees it (audience), whether it is used up, and opening hours are decided by each caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Time,
    and_,
    any_,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
)

from app.offers.models import OfferGeofence, OfferStatus

_LINKS = OfferGeofence.__table__


def standing(o: FromClause) -> ColumnElement[bool]:
    return and_(o.c.deleted_at.is_(None), o.c.status == OfferStatus.active.value)


def valid_at(
    o: FromClause, at: datetime | ColumnElement[Any], *, ended_within_days: int = 0
) -> ColumnElement[bool]:
    until_after = at
    if ended_within_days:
        until_after = at - literal_column(f"interval '{int(ended_within_days)} day'")
    return and_(
        or_(o.c.valid_from.is_(None), o.c.valid_from <= at),
        or_(o.c.valid_until.is_(None), o.c.valid_until > until_after),
    )


def in_daily_window(o: FromClause, at: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    # PostgreSQL converts with its own IANA database, so DST changes are handled per date.
    local = cast(func.timezone(o.c.time_zone, at), Time)
    return or_(
        o.c.window_start.is_(None),
        and_(
            o.c.window_start < o.c.window_end,
            local >= o.c.window_start,
            local < o.c.window_end,
        ),
        and_(
            o.c.window_start > o.c.window_end,
            or_(local >= o.c.window_start, local < o.c.window_end),
        ),
    )


def live_at(o: FromClause, at: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """This offer is live at `at`: standing, valid, and inside its daily window."""
    return and_(standing(o), valid_at(o, at), in_daily_window(o, at))


def applies_at_place(o: FromClause, geofence_id: Any, category: Any) -> ColumnElement[bool]:
    """Listed for the place `geofence_id`, or for its `category`."""
    linked = (
        exists()
        .where(_LINKS.c.offer_id == o.c.id, _LINKS.c.geofence_id == geofence_id)
        .correlate_except(_LINKS)
    )
    return or_(o.c.category == category, linked)


def has_trigger(o: FromClause, trigger: str | ColumnElement[Any]) -> ColumnElement[bool]:
    event = trigger if isinstance(trigger, ColumnElement) else literal(trigger)
    return event == any_(o.c.triggers)
