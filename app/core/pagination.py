"""Keyset (cursor) pagination: stable under inserts, O(limit) per page, `limit` clamped to 500.

A list query fetches `page.limit + 1` rows after the cursor; `trim_page` keeps the page and makes
the cursor of the next one from its last row (none when the extra row was not there).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel

from app.core.errors import Unprocessable
from app.core.types import BoundedDatetime

MAX_LIMIT = 500
DEFAULT_LIMIT = 50


class Cursor(BaseModel):
    created_at: BoundedDatetime
    id: uuid.UUID


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps({"c": created_at.isoformat(), "i": str(row_id)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    try:
        padded = value + "=" * (-len(value) % 4)
        data: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(padded))
        return Cursor(created_at=datetime.fromisoformat(data["c"]), id=uuid.UUID(data["i"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise Unprocessable("The cursor is not valid.", extra={"field": "cursor"}) from exc


class PageParams(BaseModel):
    limit: int
    cursor: Cursor | None


def page_params(
    limit: Annotated[
        int, Query(description="Page size; values above 500 are clamped.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageParams:
    return PageParams(
        limit=max(1, min(limit, MAX_LIMIT)),
        cursor=decode_cursor(cursor) if cursor else None,
    )


Pagination = Annotated[PageParams, Depends(page_params)]


class _Keyed(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


K = TypeVar("K", bound=_Keyed)


def trim_page(
    rows: Sequence[K], page: PageParams, time_attr: str = "created_at"
) -> tuple[list[K], str | None]:
    """The page (the first `page.limit` of `rows`, fetched one longer) and the next cursor.

    The cursor is the last row's (`time_attr`, id), the keyset its query orders by; None when
    `rows` held no extra row, that is, when this is the last page.
    """
    items = list(rows[: page.limit])
    if len(rows) <= page.limit:
        return items, None
    last = items[-1]
    stamp: datetime = getattr(last, time_attr)
    return items, encode_cursor(stamp, last.id)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
