"""The evaluator: fixes acknowledged with 202 (`ping_queue`) evaluated in sets, moments later.

A loop per process (in every API process by default, `run_ping_evaluator_in_process`, and in
`hereabouts worker`): wake up when this process has queued fixes (`nudge`) or every
`ping_evaluator_poll_s` (fixes another process queued), wait `ping_evaluator_delay_ms` so a set
gathers, then evaluate sets of up to `ping_evaluator_max_subjects` subjects, one transaction each
(`service.evaluate_queued`), until the queue has nothing this evaluator may claim. Any number
of evaluators may run: a subject is claimed with SKIP LOCKED, so two never evaluate the same
subject at once, and a set is committed with its events or not at all. A set that fails is
retried one subject at a time, so one subject's faulty fixes hold up no one else (that subject
is left for `HOLD_FAILED_S` and tried again).

At most `ping_evaluator_slots` sets are evaluated at once on a database, whichever processes
run evaluators: each set's transaction first takes a slot (`take_slot`, an advisory lock held
until its commit). An evaluator that finds every slot taken waits up to `ping_evaluator_poll_s`
for one; the holder claims everyone's queued fixes meanwhile (oldest first), so waiting loses
no fix, and one evaluator making large sets costs less per fix than several making small ones
on the same cores (docs/benchmarks.md). With `ping_evaluator_extra_slots_after_ms` the slots
beyond the first open only while the queue is behind by that much: one evaluator while it
keeps up, more to share a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.db import create_sessionmaker, driver_connection
from app.core.metrics import PING_EVAL_DELAY, PING_EVAL_SET, PING_EVAL_SLOT_WAITS
from app.presence import service

logger = logging.getLogger(__name__)

_wake: asyncio.Event | None = None
PREPARE_EVERY_S = 5.0
HOLD_FAILED_S = 300  # a subject whose fixes cannot be evaluated is left this long, then retried
# the advisory lock keys of the evaluating slots: "hbeval" in ASCII, then the slot's number
SLOT_KEY = int.from_bytes(b"hbeval", "big") << 8


def nudge() -> None:
    """Tell this process's evaluator that fixes were queued (committed)."""
    if _wake is not None:
        _wake.set()


async def run_evaluator(
    settings: Settings,
    engine: AsyncEngine,
    stop: asyncio.Event,
    *,
    on_events: service.EventHook | None = None,
) -> None:
    """Evaluate queued fixes until `stop` is set (the CLI worker and the API lifespan use this).

    `on_events`: what runs on each set's events in its transaction (the app hands the rules in,
    as to `PingGroups`)."""
    global _wake
    wake = _wake = asyncio.Event()
    sessions = create_sessionmaker(engine)
    delay = settings.ping_evaluator_delay_ms / 1000
    isolate = 0  # after a failed set: this many sets of one subject, to find the faulty one
    held: dict[uuid.UUID, float] = {}  # a subject whose set of one failed: left until then
    prepared_at = -PREPARE_EVERY_S
    try:
        while not stop.is_set():
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(wake.wait())
            await asyncio.wait(
                {stopping, woken},
                timeout=settings.ping_evaluator_poll_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for f in (stopping, woken):
                f.cancel()
            if stop.is_set():
                break
            nudged = wake.is_set()
            if nudged and delay > 0:
                await asyncio.sleep(delay)  # let a set gather
            wake.clear()
            try:
                while True:
                    limit = 1 if isolate else settings.ping_evaluator_max_subjects
                    now = time.monotonic()
                    for sid in [s for s, until in held.items() if until <= now]:
                        del held[sid]
                    if now >= prepared_at + PREPARE_EVERY_S:
                        # the 202 path creates new subjects' rows; this catches any it missed
                        async with sessions() as session:
                            await service.prepare_queued(session)
                            await session.commit()
                        prepared_at = now
                    async with sessions() as session:
                        if not await take_slot(session, settings, list(held)):
                            # every open slot busy for a whole wait: their holders claim
                            # this process's fixes too; it looks again after the gather delay
                            await session.rollback()
                            if nudged:
                                wake.set()
                            break
                        result = await service.evaluate_queued(
                            session, settings, limit, exclude=list(held), on_events=on_events
                        )
                        await session.commit()
                    if result.fixes:
                        _observe(result)
                    if isolate:
                        isolate -= 1
                    done = not result.subjects or (result.subjects < limit and not isolate)
                    if done or stop.is_set():
                        break
            except service.EvaluationFailed as exc:
                if len(exc.subjects) == 1:
                    held[exc.subjects[0]] = time.monotonic() + HOLD_FAILED_S
                    logger.exception(
                        "evaluating a subject's queued pings failed; they stay queued, retried "
                        "in %d s",
                        HOLD_FAILED_S,
                    )
                else:  # find the faulty subject: the next sets are of one subject each
                    isolate = len(exc.subjects)
                    logger.warning("a set of %d subjects failed; retrying one by one", isolate)
            except Exception:
                logger.exception("the ping evaluator failed; the queue is kept, retrying")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.ping_evaluator_poll_s)
    finally:
        if _wake is wake:
            _wake = None


async def take_slot(
    session: AsyncSession, settings: Settings, exclude: list[uuid.UUID] | None = None
) -> bool:
    """Take one of the `ping_evaluator_slots` evaluating slots for the session's transaction
    (released by its commit or rollback). The first slot whenever it is free; the others only
    while the queue is behind (its oldest fix, `exclude`d subjects' apart, has waited
    `ping_evaluator_extra_slots_after_ms`; 0: always). Else wait for one: while behind, the
    slot this process is assigned to, up to `ping_evaluator_poll_s`; otherwise the first, up to
    the lag that opens the others (then look again). False: none was free in time (the
    transaction is then aborted: roll it back)."""
    conn = await driver_connection(session)
    slots = settings.ping_evaluator_slots
    if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SLOT_KEY):
        return True
    poll_ms = max(1, round(settings.ping_evaluator_poll_s * 1000))
    lag_ms = settings.ping_evaluator_extra_slots_after_ms
    if slots > 1 and lag_ms > 0 and not await _behind(conn, lag_ms, exclude or []):
        slots, wait_slot, timeout_ms = 1, 0, min(poll_ms, lag_ms)
    else:
        wait_slot, timeout_ms = os.getpid() % slots, poll_ms
    for slot in range(1, slots):
        if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SLOT_KEY + slot):
            return True
    await conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
    try:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SLOT_KEY + wait_slot)
    except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):  # or statement_timeout
        PING_EVAL_SLOT_WAITS.inc()
        return False
    await conn.execute("SET LOCAL lock_timeout TO DEFAULT")  # the set's own waits as usual
    return True


async def _behind(conn: asyncpg.Connection, lag_ms: int, exclude: list[uuid.UUID]) -> bool:
    """Has the oldest queued fix (of a subject not in `exclude`) waited `lag_ms` or longer?"""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM (SELECT received_at FROM ping_queue"
            " WHERE subject_id <> ALL($1::uuid[]) ORDER BY seq LIMIT 1) q"
            " WHERE q.received_at <= clock_timestamp() - make_interval(secs => $2 / 1000.0))",
            exclude,
            lag_ms,
        )
    )


def _observe(result: service.EvaluationResult) -> None:
    PING_EVAL_SET.observe(result.fixes)
    if result.oldest_received_at is not None:
        PING_EVAL_DELAY.observe((datetime.now(UTC) - result.oldest_received_at).total_seconds())
