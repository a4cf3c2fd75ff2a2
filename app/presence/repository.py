"""SQL for the presence event log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.presence.models import PresenceEvent


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert many events in one statement (Core, not one ORM object per row)."""
    if rows:
        await session.execute(insert(PresenceEvent), rows)
