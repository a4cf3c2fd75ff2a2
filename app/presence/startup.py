"""Startup hook: make sure the ping day partitions exist before the first request."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.presence import service

logger = logging.getLogger(__name__)


async def maintain_on_startup(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Create ping partitions ahead and drop expired ones; never blocks startup on failure."""
    try:
        async with sessionmaker() as session, session.begin():
            outcome = await service.maintain_ping_partitions(session, settings)
        logger.info("ping partitions maintained", extra={"outcome": outcome})
    except Exception as exc:  # noqa: BLE001 - the database may not be migrated yet (readyz says)
        logger.warning("ping partition maintenance skipped: %s", type(exc).__name__)
