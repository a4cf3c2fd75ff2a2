"""Delivery workers: claim due outbox rows, send them, record every attempt.

Any number of workers (processes or tasks) can run against one database:

* rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``lease_expires_at`` plus a
  random ``lease_token``), so each due row has one claimant; a worker that dies leaves its rows
  leased and they become due again when the lease runs out (at-least-once towards the push
  service; the stable ``Topic`` makes a duplicate replace itself);
* results are settled only ``WHERE lease_token = <ours>``, so a worker that lost its lease cannot
  overwrite the row's newer state;
* workers wake on ``LISTEN hereabouts_outbox`` (sent at commit by ``service.enqueue``) and also
  poll every ``push_poll_interval_s``, so a lost LISTEN connection only delays, never stalls;
* each push-service origin has a concurrency cap and rows for an origin at its cap are not
  claimed, so one hanging service cannot occupy the whole worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.core.listen import listen_dsn, listen_forever
from app.notifications import repository as repo
from app.notifications.metrics import PUSH_IN_FLIGHT, PUSH_LATENCY, PUSH_OUTCOMES, PUSH_QUEUED
from app.notifications.models import DeliveryStatus, OutboxStatus
from app.notifications.sender import Outcome, PushMessage, PushSender, backoff_s
from app.notifications.vapid import VapidSigner

logger = logging.getLogger(__name__)
RECORD_BATCH = 500


@dataclass
class _Settled:
    finish: dict[str, Any]
    delivery: dict[str, Any]
    gone_subscription: uuid.UUID | None = None


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    recorded: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sender: PushSender | None = None,
        *,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessionmaker = sessionmaker or create_sessionmaker(engine)
        self._owns_sender = sender is None
        self.sender = sender or PushSender(settings, VapidSigner.from_settings(settings))
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.rng = rng or random.Random()
        self.concurrency = max(1, settings.push_worker_concurrency)
        self.batch = max(1, min(settings.push_worker_batch, self.concurrency))
        self.stats = WorkerStats()
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: asyncio.Queue[_Settled] = asyncio.Queue()
        self._listen_conn: asyncpg.Connection | None = None
        self._maybe_more = True
        self._last_gauge = 0.0
        self.per_origin = max(1, settings.push_per_origin_concurrency)
        self._origin_load: dict[str, int] = {}
        self.listen_dsn = listen_dsn(engine)

    # --- lifecycle -------------------------------------------------------------------------

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
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._results.join()
        finally:
            for task in helpers:
                task.cancel()
            for task in list(self._tasks):
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._owns_sender:
                await self.sender.aclose()

    # --- LISTEN/NOTIFY ---------------------------------------------------------------------

    async def _listener(self) -> None:
        # polling covers whatever is committed while this is down
        await listen_forever(
            lambda: self.listen_dsn,
            repo.NOTIFY_CHANNEL,
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

    # --- claiming --------------------------------------------------------------------------

    def busy_origins(self) -> list[str]:
        """Origins with as many rows in hand as their cap: claim none of theirs for now."""
        return [o for o, n in self._origin_load.items() if n >= self.per_origin]

    async def _claim(self, limit: int) -> list[repo.ClaimedJob]:
        async with self.sessionmaker() as session, session.begin():
            jobs = await repo.claim(session, limit, self.settings.push_lease_s, self.busy_origins())
            now = time.monotonic()
            if now - self._last_gauge >= self.settings.push_poll_interval_s:
                self._last_gauge = now
                PUSH_QUEUED.set(await repo.count_pending(session))
        return jobs

    async def claim_and_dispatch(self) -> int:
        """Claim up to the free capacity and start sending; returns the number claimed."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        want = min(self.batch, free)
        jobs = await self._claim(want)
        # One claim may return more rows for an origin than its cap allows (several at once):
        # hand the surplus straight back so a slow origin never fills this worker's capacity.
        overflow: list[repo.ClaimedJob] = []
        for job in jobs:
            load = self._origin_load.get(job.origin, 0)
            if load >= self.per_origin:
                overflow.append(job)
                continue
            self._origin_load[job.origin] = load + 1
            task = asyncio.create_task(self._process(job))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, origin=job.origin))
        if overflow:
            async with self.sessionmaker() as session, session.begin():
                await repo.release(session, [(j.id, j.lease_token) for j in overflow])
        dispatched = len(jobs) - len(overflow)
        self.stats.claimed += dispatched
        self._maybe_more = len(jobs) == want or bool(self.busy_origins())
        return dispatched

    def _task_done(self, task: asyncio.Task[None], *, origin: str) -> None:
        self._tasks.discard(task)
        self._origin_load[origin] -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: delivery task failed: %r", self.name, task.exception())
        self._slot.set()

    async def _claim_loop(self) -> None:
        poll = self.settings.push_poll_interval_s
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

    # --- sending and settling ---------------------------------------------------------------

    def _decide(
        self, job: repo.ClaimedJob, outcome: Outcome, retry_after: float | None
    ) -> tuple[OutboxStatus, float, DeliveryStatus]:
        """(outbox status, delay before the next attempt, delivery status)."""
        if outcome is Outcome.delivered:
            return OutboxStatus.delivered, 0.0, DeliveryStatus.delivered
        if outcome is Outcome.gone:
            return OutboxStatus.gone, 0.0, DeliveryStatus.gone
        if outcome is Outcome.failed:
            return OutboxStatus.failed, 0.0, DeliveryStatus.failed
        if job.attempts >= self.settings.push_max_attempts:
            return OutboxStatus.dead, 0.0, DeliveryStatus.dead
        delay = (
            retry_after
            if retry_after is not None
            else backoff_s(
                job.attempts,
                self.settings.push_backoff_base_s,
                self.settings.push_backoff_cap_s,
                self.rng,
            )
        )
        return OutboxStatus.pending, delay, DeliveryStatus.retry

    async def _process(self, job: repo.ClaimedJob) -> None:
        attempted_at = datetime.now(UTC)
        http_status: int | None = None
        latency_ms: float | None = None
        gone: uuid.UUID | None = None
        if job.expired:
            status, delay, dstatus, error = (
                OutboxStatus.dead,
                0.0,
                DeliveryStatus.dead,
                "expired before delivery (TTL)",
            )
        elif job.endpoint is None or job.p256dh is None or job.auth is None:
            status, delay, dstatus, error = (
                OutboxStatus.gone,
                0.0,
                DeliveryStatus.gone,
                "subscription was removed",
            )
        else:
            msg = PushMessage(
                endpoint=job.endpoint,
                p256dh=job.p256dh,
                auth=job.auth,
                payload=job.payload.encode(),
                ttl_s=max(1, job.ttl_left_s),
                urgency=job.urgency,
                topic=job.topic,
            )
            PUSH_IN_FLIGHT.inc()
            try:
                result = await self.sender.send(msg)
            finally:
                PUSH_IN_FLIGHT.dec()
            self.stats.sent += 1
            http_status, latency_ms, error = (
                result.http_status,
                result.latency_ms,
                result.error or "",
            )
            if http_status is not None:
                PUSH_LATENCY.observe(result.latency_ms / 1000.0)
            status, delay, dstatus = self._decide(job, result.outcome, result.retry_after_s)
            if result.outcome is Outcome.gone and job.subscription_id is not None:
                gone = job.subscription_id
        metric = "retried" if dstatus == DeliveryStatus.retry else str(dstatus)
        PUSH_OUTCOMES.labels(metric).inc()
        self.stats.outcomes[metric] = self.stats.outcomes.get(metric, 0) + 1
        await self._results.put(
            _Settled(
                finish={
                    "id": job.id,
                    "token": job.lease_token,
                    "status": str(status),
                    "delay_s": float(delay),
                    "error": (error or None) and error[:500],
                },
                delivery={
                    "organisation_id": job.organisation_id,
                    "outbox_id": job.id,
                    "notification_id": job.notification_id,
                    "subscription_id": job.subscription_id,
                    "attempt": job.attempts,
                    "attempted_at": attempted_at,
                    "push_origin": job.origin,
                    "status": str(dstatus),
                    "http_status": http_status,
                    "latency_ms": latency_ms,
                    "error": (error or None) and error[:500],
                },
                gone_subscription=gone,
            )
        )

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

    async def record(self, items: list[_Settled]) -> None:
        """Settle a batch of attempts in one transaction (outbox rows, log, gone subscriptions)."""
        async with self.sessionmaker() as session, session.begin():
            await repo.finish(session, [i.finish for i in items])
            await repo.insert_deliveries(session, [i.delivery for i in items])
            gone = sorted({i.gone_subscription for i in items if i.gone_subscription is not None})
            await repo.delete_subscriptions(session, gone)


async def run_worker(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Run the delivery workers (Web Push, webhooks) until `stop` is set (the CLI and the API
    lifespan use this)."""
    from app.privacy.worker import purge_loop
    from app.webhooks.worker import run_webhook_worker

    worker = DeliveryWorker(settings, engine)
    task = asyncio.create_task(worker.run())
    purge_task = asyncio.create_task(purge_loop(settings, engine, stop), name="retention-purge")
    webhooks_task = asyncio.create_task(run_webhook_worker(settings, engine, stop), name="webhooks")
    await stop.wait()
    worker.stop()
    await task
    await purge_task
    await webhooks_task


class InProcessWorker:
    """The worker the API process runs next to itself (`run_worker_in_process`)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(settings, engine), name="push-worker")

    async def _run(self, settings: Settings, engine: AsyncEngine) -> None:
        try:
            await run_worker(settings, engine, self._stop)
        except Exception:
            logger.exception("the in-process delivery worker stopped")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            self._task.cancel()
