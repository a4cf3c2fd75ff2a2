"""Server-sent events for the staff console: a poll loop over the event log, org-scoped.

Each poll opens its own short session (never a transaction held open for the life of the
stream) and reads events *created* since the watermark minus a small look-back, skipping ids
already sent: a transaction that commits slightly after a later one is still delivered.
Every SSE message's `id` is a cursor; a reconnecting EventSource sends it back as
`Last-Event-ID` and resumes after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unprocessable
from app.core.pagination import decode_cursor, encode_cursor
from app.presence import service
from app.presence.schemas import EventRead

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]

LOOKBACK = timedelta(seconds=5)
BATCH = 500
HEARTBEAT_S = 15.0


def session_factory(request: Request) -> SessionFactory:
    """A new session per poll (overridden in tests to share the test transaction)."""
    factory: SessionFactory = request.app.state.sessionmaker
    return factory


def start_from(
    since: datetime | None, last_event_id: str | None
) -> tuple[datetime, uuid.UUID] | None:
    if last_event_id:
        try:
            cur = decode_cursor(last_event_id)
        except Unprocessable:
            return None
        return (cur.created_at, cur.id)
    if since is not None:
        return (since, uuid.UUID(int=0))
    return None


def format_event(row: Any) -> bytes:
    event = EventRead.from_row(row)
    assert event.created_at is not None
    payload = orjson.dumps(event.model_dump(mode="json"))
    cursor = encode_cursor(event.created_at, event.id)
    return (
        b"id: "
        + cursor.encode()
        + b"\nevent: "
        + event.type.value.encode()
        + b"\ndata: "
        + payload
        + b"\n\n"
    )


async def event_stream(
    factory: SessionFactory,
    organisation_id: uuid.UUID,
    start: tuple[datetime, uuid.UUID] | None,
    *,
    poll_s: float,
    follow: bool,
    is_disconnected: Callable[[], Awaitable[bool]],
    viewer_id: uuid.UUID | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE messages: the backlog after `start`, then (if `follow`) new events as they come."""
    yield b"retry: 2000\n\n"
    if start is None:
        async with factory() as session:
            start = (await service.db_now(session), uuid.UUID(int=0))
    resume = start
    watermark = start[0]
    sent: dict[uuid.UUID, datetime] = {}
    idle = 0.0
    while True:
        key: tuple[datetime, uuid.UUID] = (watermark - LOOKBACK, uuid.UUID(int=0))
        while True:  # page through the look-back window
            async with factory() as session:
                rows = await service.events_created_after(session, organisation_id, key, BATCH)
            for row in rows:
                if row.id in sent or (row.created_at, row.id) <= resume:
                    continue
                if row.staff_user_id is not None and row.staff_user_id != viewer_id:
                    continue  # another staff member's event: their location history
                sent[row.id] = row.created_at
                yield format_event(row)
            if rows:
                key = (rows[-1].created_at, rows[-1].id)
                watermark = max(watermark, rows[-1].created_at)
            if len(rows) < BATCH:
                break
        horizon = watermark - LOOKBACK
        for eid in [k for k, v in sent.items() if v < horizon]:
            del sent[eid]
        if not follow or await is_disconnected():
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= HEARTBEAT_S:
            idle = 0.0
            yield b": keepalive\n\n"
