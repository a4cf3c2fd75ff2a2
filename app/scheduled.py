"""Scheduled jobs, with their own runner: the retention purge (`app.privacy.worker`), the end
of ad-hoc shifts at their maximum length (`app.shifts.worker`) and the lone-working clock
(`app.safety.worker`).

`hereabouts worker` runs them beside its push delivery worker, and each API process does when
`run_worker_in_process` is on (the default), so a deployment that runs either has them. Each
job makes sure that however many processes run it, each piece of work is done once: the purge
with a PostgreSQL advisory lock, the lone-working clock by claiming rows with SKIP LOCKED.
A new periodic job is a `Job` in `JOBS`; no domain imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.privacy.worker import purge_loop
from app.safety.worker import lone_working_loop
from app.shifts.worker import shift_sweep_loop

JobLoop = Callable[[Settings, AsyncEngine, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Job:
    name: str
    loop: JobLoop  # runs until the event is set; handles its own failures and interval


JOBS: tuple[Job, ...] = (
    Job("retention-purge", purge_loop),
    Job("adhoc-shift-end", shift_sweep_loop),
    # no advisory lock: every process may tick; rows are claimed FOR UPDATE SKIP LOCKED
    Job("lone-working", lone_working_loop),
)


async def run_scheduled_jobs(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Run every job until `stop` is set."""
    tasks = [asyncio.create_task(j.loop(settings, engine, stop), name=j.name) for j in JOBS]
    await asyncio.gather(*tasks)
