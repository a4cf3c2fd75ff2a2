"""Fault drill (issue 18): one push service answers 429 + Retry-After, then 500, then hangs.

The worker must wait as long as Retry-After says, back off after the 500, give up on the hanging
request at its timeout and retry it, and meanwhile keep delivering to another push service at
full speed.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from tests.notifications.fake_push import FakePushService
from tests.notifications.test_worker import World, all_settled, statuses, wait_for, worker

RETRY_AFTER_S = 2


async def test_429_then_500_then_hanging_obeys_backoff_and_slows_no_other_origin(
    push_engine: AsyncEngine,
    push_settings: Settings,
    fake_push: FakePushService,
    other_fake_push: FakePushService,
) -> None:
    world = World(push_engine)
    troubled = await world.people(4)
    for who in troubled:
        for sub in await world.subscribe(who, fake_push):
            fake_push.script(sub, (429, str(RETRY_AFTER_S)), 500, "hang")
    fine = await world.people(20)
    for who in fine:
        await world.subscribe(who, other_fake_push)
    await world.notify(troubled)
    w = worker(
        push_settings,
        push_engine,
        push_timeout_s=3.0,
        push_worker_concurrency=4,
        push_per_origin_concurrency=2,
    )
    task = asyncio.create_task(w.run())
    try:
        # the troubled origin gets to its hanging phase: both of its slots are held
        async def hanging() -> bool:
            return fake_push.hanging == 2

        await wait_for(hanging, guard_s=30)
        began = time.monotonic()
        await world.notify(fine)

        async def fine_done() -> bool:
            return len(other_fake_push.received) == 20

        await wait_for(fine_done, guard_s=30)
        other_took = time.monotonic() - began
        assert fake_push.hanging >= 1  # still hanging while the other origin was served
        await wait_for(lambda: all_settled(push_engine), guard_s=60)
    finally:
        fake_push.release.set()
        w.stop()
        await task
    # served before even one hanging request timed out
    assert other_took < 3.0, f"the other origin waited {other_took:.2f} s"
    assert await statuses(push_engine) == {"delivered": 24}

    async with push_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT outbox_id, attempt, status, http_status, attempted_at "
                    "FROM push_deliveries WHERE push_origin = :o ORDER BY outbox_id, attempt"
                ),
                {"o": fake_push.origin},
            )
        ).all()
    by_row: dict[object, list[tuple[int, str, int | None, float]]] = {}
    for outbox_id, attempt, status, http_status, at in rows:
        by_row.setdefault(outbox_id, []).append((attempt, status, http_status, at.timestamp()))
    assert len(by_row) == 4
    for attempts in by_row.values():
        assert [(a, s, h) for a, s, h, _ in attempts][:2] == [(1, "retry", 429), (2, "retry", 500)]
        assert attempts[2][:2] == (3, "retry")  # the hanging request, timed out
        assert attempts[-1][1:3] == ("delivered", 201)
        # Retry-After obeyed: the second attempt came no sooner than it allowed
        assert attempts[1][3] - attempts[0][3] >= RETRY_AFTER_S - 0.05
        # and each later attempt after the one before (backoff, never a tight loop)
        times = [at for *_, at in attempts]
        assert times == sorted(times)
