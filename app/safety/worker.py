"""The lone-working clock: a job of `app.scheduled`. Every `lone_working_tick_s` it runs
`service.tick(now)` in a transaction of its own until nothing more is due.

It keeps no state: what is due follows from the rows (`lone_visits.due_at`, `prompted_at`,
`safety_alerts.next_send_at`), so a restart, or a replica dying mid-tick (its transaction rolls
back, its row locks go), loses nothing and repeats nothing. Several processes may run it at once:
each claims rows FOR UPDATE SKIP LOCKED (docs/tasks.md, "One alarm per visit").
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.safety import service

logger = logging.getLogger(__name__)


async def tick_until_done(settings: Settings, engine: AsyncEngine, now: datetime) -> int:
    """Tick in one transaction per batch until a tick finds less than a batch; returns how
    many prompts, alarms and re-sends were made."""
    sessionmaker = create_sessionmaker(engine)
    done = 0
    while True:
        async with sessionmaker() as session:
            result = await service.tick(session, settings, now)
            await session.commit()
        done += len(result.prompts) + len(result.alarms) + len(result.resends)
        if not result.full:
            return done


async def purge_once(settings: Settings, engine: AsyncEngine, now: datetime) -> tuple[int, int]:
    async with create_sessionmaker(engine)() as session:
        removed = await service.purge(session, settings, now)
        await session.commit()
    return removed


async def lone_working_loop(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Tick now, then every `lone_working_tick_s`, until `stop` is set; purge old visits and
    alerts every `purge_interval_s` (a plain DELETE: two processes purging at once is harmless)."""
    last_purge = float("-inf")
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            made = await tick_until_done(settings, engine, datetime.now(UTC))
            if made:
                logger.info("lone working: prompts, alarms and re-sends made", extra={"n": made})
            if loop.time() - last_purge >= settings.purge_interval_s:
                last_purge = loop.time()
                visits, alerts = await purge_once(settings, engine, datetime.now(UTC))
                if visits or alerts:
                    logger.info(
                        "lone working: retention purge", extra={"visits": visits, "alerts": alerts}
                    )
        except Exception:
            logger.exception("lone working tick failed; will try again at the next interval")
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.lone_working_tick_s)
