"""The scheduled jobs run the retention purge (privacy): expired notifications go, in the
`hereabouts worker` runner and in the API process (`run_worker_in_process`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from app.scheduled import run_scheduled_jobs
from tests.notifications.test_worker import World, wait_for


async def _old_and_fresh(push_engine: AsyncEngine) -> tuple[object, object]:
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

    return old_note, fresh_note


async def _count(push_engine: AsyncEngine, note: object) -> int:
    async with push_engine.connect() as conn:
        sql = text("SELECT count(*) FROM notifications WHERE id = :n")
        return int((await conn.execute(sql, {"n": note})).scalar_one())


async def test_the_job_runner_purges_expired_notifications_and_keeps_fresh_ones(
    push_settings: Settings, push_engine: AsyncEngine
) -> None:
    old_note, fresh_note = await _old_and_fresh(push_engine)

    async def old_is_gone() -> bool:
        return await _count(push_engine, old_note) == 0

    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduled_jobs(push_settings, push_engine, stop))
    try:
        await wait_for(old_is_gone)
    finally:
        stop.set()
        await task
    assert await _count(push_engine, fresh_note) == 1


async def test_the_api_process_runs_the_jobs_with_its_in_process_worker(
    push_settings: Settings, push_engine: AsyncEngine
) -> None:
    old_note, fresh_note = await _old_and_fresh(push_engine)

    async def old_is_gone() -> bool:
        return await _count(push_engine, old_note) == 0

    settings = push_settings.model_copy(update={"run_worker_in_process": True})
    app = create_app(settings, engine=push_engine)
    async with app.router.lifespan_context(app):
        await wait_for(old_is_gone)
    assert await _count(push_engine, fresh_note) == 1


async def test_without_the_in_process_worker_the_api_process_purges_nothing(
    push_settings: Settings, push_engine: AsyncEngine
) -> None:
    old_note, _ = await _old_and_fresh(push_engine)
    app = create_app(push_settings, engine=push_engine)  # run_worker_in_process=False
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.5)
    assert await _count(push_engine, old_note) == 1
