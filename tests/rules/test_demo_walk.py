"""`hereabouts demo walk` tells the whole story on the demo town."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.demo_walk import DEMO_OFFER, demo_walk


async def test_demo_walk_queues_the_offer_once_and_hands_the_worker_tasks(
    db: AsyncSession, settings: Settings
) -> None:
    lines = await demo_walk(db, settings)
    text = "\n".join(lines)
    offer_lines = [line for line in lines if DEMO_OFFER in line]
    # queued once (or deferred, when the test runs in quiet hours); never twice
    assert sum("QUEUED" in line for line in offer_lines) == 1, text
    assert any("suppressed: cooldown" in line for line in offer_lines), text
    assert "task: Library stock check: reservations shelf" in text
    assert "task: Weekly playground inspection" in text
