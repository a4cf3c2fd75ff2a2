"""`breathe()` yields to the event loop once its slice has passed, and only then."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.core import pace


async def test_breathe_yields_once_per_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(pace, "_last", 1000.0)
    ran = 0

    async def other_work() -> None:
        nonlocal ran
        while True:
            ran += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)  # the other work starts, then waits for the loop
    try:
        progress = []
        for _ in range(10):  # 10 items of 0.6 ms each: a yield once 2 ms have passed
            clock[0] += 0.0006
            await pace.breathe()
            progress.append(ran)
    finally:
        task.cancel()
    moved = [i for i in range(1, len(progress)) if progress[i] > progress[i - 1]]
    assert progress[0] == 1  # nothing before the first slice had passed
    assert moved == [3, 7]  # at 2.4 ms, and 2.4 ms after that yield; not between
