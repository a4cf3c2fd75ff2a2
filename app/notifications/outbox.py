"""What every delivery channel's worker shares: claim due outbox rows, send, record each attempt.

A channel (`webpush` in `app.notifications.worker`, `webhook` in `app.webhooks.worker`) says how
to claim its rows (``FOR UPDATE SKIP LOCKED`` with a lease and a token), what the unit of its
concurrency cap is (a push-service origin, a webhook endpoint), how to send one and how to
settle a batch of results; the loop, the LISTEN/NOTIFY wake-up, the per-key caps and the
batched recorder are written once, here:

* workers wake on ``LISTEN <notify_channel>`` (sent at commit by whoever wrote the rows) and also
  poll every `poll_interval_s`, so a lost LISTEN connection only delays, never stalls;
* at most `concurrency` sends in flight and `per_key` per key; rows of a key at its cap are not
  claimed (the channel's claim skips `busy_keys()`), and surplus from one claim is handed back
  at once, so one hanging receiver holds only its own slots;
* after a claim fills the capacity, the next one waits until a quarter of it is free again:
  one claim statement per batch of rows, not per finished send;
* results are settled in batches of up to `RECORD_BATCH` by `record`, retried until written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.listen import listen_forever

logger = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 20.0  # how long `run` waits on the way out for in-flight sends
RECORD_BATCH = 500

Job = TypeVar("Job")
Settled = TypeVar("Settled")


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    recorded: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class OutboxWorker(Generic[Job, Settled]):
    """The claim → send → record loop of one delivery channel (subclasses fill in the channel)."""

    notify_channel: str = ""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        listen_dsn: str,
        name: str,
        concurrency: int,
        batch: int,
        per_key: int,
        poll_interval_s: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.listen_dsn = listen_dsn
        self.name = name
        self.concurrency = max(1, concurrency)
        self.batch = max(1, min(batch, self.concurrency))
        self.per_key = max(1, per_key)
        self.poll_interval_s = poll_interval_s
        self.stats = WorkerStats()
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: asyncio.Queue[Settled] = asyncio.Queue()
        self._listen_conn: asyncpg.Connection | None = None
        self._maybe_more = True
        self._load: dict[Hashable, int] = {}

    # --- what a channel provides -------------------------------------------------------------

    def key_of(self, job: Job) -> Hashable:
        """The unit of the per-key concurrency cap."""
        raise NotImplementedError

    async def claim(self, limit: int) -> list[Job]:
        """Claim up to `limit` due rows, none of `busy_keys()`, in a transaction of its own."""
        raise NotImplementedError

    async def release(self, jobs: list[Job]) -> None:
        """Hand claimed rows back at once (they were over their key's cap)."""
        raise NotImplementedError

    async def process(self, job: Job) -> None:
        """Send one row and `await self.settled(result)` with what happened."""
        raise NotImplementedError

    async def record(self, items: list[Settled]) -> None:
        """Settle a batch of results in one transaction."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the channel's resources (its HTTP client) after the last send."""

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self, listen: bool = True) -> None:
        """Deliver until `stop()`; on the way out, wait for in-flight sends and record them."""
        helpers = [asyncio.create_task(self._recorder(), name=f"{self.name}-recorder")]
        if listen:
            helpers.append(asyncio.create_task(self._listener(), name=f"{self.name}-listen"))
        try:
            await self._claim_loop()
            try:
                # in-flight sends and their recording, within a bound: a worker must never hang
                # its process's shutdown (rows not recorded stay leased and are sent again by
                # any worker once the lease runs out: at least once, as always)
                await asyncio.wait_for(self._drain(), timeout=DRAIN_TIMEOUT_S)
            except TimeoutError:
                logger.warning(
                    "%s: in-flight sends not recorded within %s s of stopping; left leased",
                    self.name,
                    DRAIN_TIMEOUT_S,
                )
        finally:
            for task in helpers:
                task.cancel()
            for task in list(self._tasks):
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.aclose()

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._results.join()

    async def settled(self, item: Settled) -> None:
        await self._results.put(item)

    # --- LISTEN/NOTIFY ------------------------------------------------------------------------

    async def _listener(self) -> None:
        # polling covers whatever is committed while this is down
        await listen_forever(
            lambda: self.listen_dsn,
            self.notify_channel,
            self._on_notify,
            heartbeat=self._heartbeat,
            every_s=10.0,
            on_up=self._listening,
            on_down=self._not_listening,
            name=self.name,
        )

    def _listening(self, conn: asyncpg.Connection) -> None:
        self._listen_conn = conn
        self._wake.set()  # catch up on anything committed while not listening

    def _not_listening(self) -> None:
        self._listen_conn = None

    @staticmethod
    async def _heartbeat(conn: asyncpg.Connection) -> None:
        await asyncio.wait_for(conn.execute("SELECT 1"), timeout=5)

    def _on_notify(self, *_args: object) -> None:
        self._maybe_more = True
        self._wake.set()

    # --- claiming -----------------------------------------------------------------------------

    def busy_keys(self) -> list[Any]:
        """Keys with as many rows in hand as their cap: claim none of theirs for now."""
        return [k for k, n in self._load.items() if n >= self.per_key]

    async def claim_and_dispatch(self) -> int:
        """Claim up to the free capacity and start sending; returns the number claimed."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        want = min(self.batch, free)
        jobs = await self.claim(want)
        # One claim may return more rows for a key than its cap allows (several at once):
        # hand the surplus straight back so a slow receiver never fills this worker's capacity.
        overflow: list[Job] = []
        for job in jobs:
            key = self.key_of(job)
            load = self._load.get(key, 0)
            if load >= self.per_key:
                overflow.append(job)
                continue
            self._load[key] = load + 1
            task = asyncio.create_task(self.process(job))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, key=key))
        if overflow:
            await self.release(overflow)
        dispatched = len(jobs) - len(overflow)
        self.stats.claimed += dispatched
        self._maybe_more = len(jobs) == want or bool(self.busy_keys())
        return dispatched

    def _task_done(self, task: asyncio.Task[None], *, key: Hashable) -> None:
        self._tasks.discard(task)
        self._load[key] -= 1
        if self._load[key] <= 0:
            del self._load[key]
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: delivery task failed: %r", self.name, task.exception())
        self._slot.set()

    async def _claim_loop(self) -> None:
        poll = self.poll_interval_s
        threshold = max(1, self.batch // 4)
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self.claim_and_dispatch()
            except Exception as exc:  # noqa: BLE001 - database hiccup: wait and poll again
                logger.warning("%s: claim failed (%s)", self.name, type(exc).__name__)
                claimed = 0
                self._maybe_more = False
                await asyncio.sleep(min(poll, 1.0))
            if claimed and self._maybe_more and len(self._tasks) < self.concurrency:
                continue
            deadline = time.monotonic() + poll
            while not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._wake.is_set():
                    break
                self._slot.clear()
                waiters = [
                    asyncio.create_task(self._wake.wait()),
                    asyncio.create_task(self._slot.wait()),
                ]
                try:
                    await asyncio.wait(
                        waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for w in waiters:
                        w.cancel()
                free = self.concurrency - len(self._tasks)
                if self._slot.is_set() and self._maybe_more and free >= threshold:
                    break

    # --- recording ----------------------------------------------------------------------------

    async def _recorder(self) -> None:
        while True:
            first = await self._results.get()
            items = [first]
            while len(items) < RECORD_BATCH:
                try:
                    items.append(self._results.get_nowait())
                except asyncio.QueueEmpty:
                    break
            while True:
                try:
                    await self.record(items)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep the results; retry the write
                    logger.warning("%s: recording failed (%s); retrying", self.name, exc)
                    await asyncio.sleep(1.0)
            self.stats.recorded += len(items)
            for _ in items:
                self._results.task_done()
