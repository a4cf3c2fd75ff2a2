"""The scheduled job that ends ad-hoc shifts at their maximum length (one process at a time)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.shifts import service

logger = logging.getLogger(__name__)


async def shift_sweep_loop(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Close expired ad-hoc shifts now, then every `staff_shift_sweep_interval_s`.

    The location gate never needs it (a shift past `ends_by` is over whether closed or not);
    it makes the record and the audit log say so.
    """
    sessionmaker = create_sessionmaker(engine)
    while not stop.is_set():
        try:
            async with sessionmaker() as session:
                closed = await service.end_expired_shifts(session)
                await session.commit()
            if closed:
                logger.info("ad-hoc shifts ended by themselves", extra={"count": closed})
        except Exception:
            logger.exception("ending ad-hoc shifts failed; will try again at the next interval")
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.staff_shift_sweep_interval_s)
