"""app.core.pagination.trim_page: every list endpoint trims its page and makes its cursor here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.core.pagination import PageParams, decode_cursor, trim_page

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Row:
    id: uuid.UUID
    created_at: datetime
    at: datetime


def _rows(n: int) -> list[Row]:
    return [
        Row(uuid.uuid4(), T0 + timedelta(minutes=i), T0 - timedelta(minutes=i)) for i in range(n)
    ]


def test_a_page_without_the_extra_row_is_the_last() -> None:
    rows = _rows(3)
    assert trim_page(rows, PageParams(limit=3, cursor=None)) == (rows, None)
    assert trim_page([], PageParams(limit=3, cursor=None)) == ([], None)


def test_the_extra_row_is_dropped_and_the_cursor_names_the_last_row_kept() -> None:
    rows = _rows(4)
    items, cursor = trim_page(rows, PageParams(limit=3, cursor=None))
    assert items == rows[:3]
    assert cursor is not None
    decoded = decode_cursor(cursor)
    assert (decoded.created_at, decoded.id) == (rows[2].created_at, rows[2].id)


def test_the_cursor_uses_the_time_column_the_list_is_ordered_by() -> None:
    rows = _rows(2)
    _, cursor = trim_page(rows, PageParams(limit=1, cursor=None), "at")
    assert cursor is not None
    assert decode_cursor(cursor).created_at == rows[0].at
