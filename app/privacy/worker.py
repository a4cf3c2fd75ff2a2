"""The scheduled purge: a job of `app.scheduled`, done by one process at a time (advisory lock)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.privacy import service

logger = logging.getLogger(__name__)


async def purge_loop(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Purge now, then every `purge_interval_s`, until `stop` is set."""
    sessionmaker = create_sessionmaker(engine)
    while not stop.is_set():
        try:
            async with sessionmaker() as session:
                removed = await service.purge_once_guarded(session, settings)
                await session.commit()
            if removed is not None:
                logger.info("retention purge done", extra={"removed": removed})
        except Exception:
            logger.exception("retention purge failed; will try again at the next interval")
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.purge_interval_s)
