"""The delivery worker also runs the retention purge (privacy): expired notifications go."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.notifications.worker import run_worker
from tests.notifications.test_worker import World, wait_for


async def test_the_worker_purges_expired_notifications_and_keeps_fresh_ones(
    push_settings: Settings, push_engine: AsyncEngine
) -> None:
    world = World(push_engine)
    old, fresh = await world.people(2)
    [old_note] = await world.notify([old], decision="suppressed:test")
    [fresh_note] = await world.notify([fresh], decision="suppressed:test")
    async with push_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE notifications SET created_at = created_at - CAST(:age AS interval) "
                "WHERE id = :n"
            ),
            {"age": timedelta(days=31), "n": old_note},
        )

    async def count(note: object) -> int:
        async with push_engine.connect() as conn:
            sql = text("SELECT count(*) FROM notifications WHERE id = :n")
            return int((await conn.execute(sql, {"n": note})).scalar_one())

    async def old_is_gone() -> bool:
        return await count(old_note) == 0

    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(push_settings, push_engine, stop))
    try:
        await wait_for(old_is_gone)
    finally:
        stop.set()
        await task
    assert await count(fresh_note) == 1
