"""When a place is active: the one SQL expression every query that asks it is built from.

`active_at` takes the columns and the time, so the ORM queries pass `Geofence` columns and a
datetime, and the raw asyncpg statements render it (`app.core.db.render_sql`) over their own alias
and placeholder: `geofences/repository.py` (list filter, resolve), `offers/repository.py` (offers
near a place) and `checkins/repository.py` (the check-in context). `service.is_active` is its
Python twin for a loaded row; tests/geofences/test_active_window.py holds them all to the same
answers. The presence batch query (`presence/repository.py`) and migration 0019's SQL still state
the rule themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import QueryableAttribute

Column = ColumnElement[Any] | QueryableAttribute[Any]  # a table's column or a mapped attribute


def active_at(
    active_from: Column,
    active_until: Column,
    at: datetime | ColumnElement[Any],
) -> ColumnElement[bool]:
    """Active from `active_from` (inclusive, none = always was) until `active_until` (exclusive,
    none = never ends): a place whose window ends at midnight is no longer active at midnight."""
    return and_(
        or_(active_from.is_(None), active_from <= at),
        or_(active_until.is_(None), active_until > at),
    )
