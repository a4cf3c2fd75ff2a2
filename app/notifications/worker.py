"""The Web Push channel's delivery worker: claim its due `outbox` rows, send, record each attempt.

The loop, wake-up, per-key caps and batched recording are written once, in
`app.notifications.outbox.OutboxWorker` (shared with the webhook channel). Any number of workers
(processes or tasks) can run against one database:

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
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.core.listen import listen_dsn
from app.notifications import repository as repo
from app.notifications.metrics import PUSH_IN_FLIGHT, PUSH_LATENCY, PUSH_OUTCOMES, PUSH_QUEUED
from app.notifications.models import DeliveryStatus, OutboxStatus
from app.notifications.outbox import OutboxWorker
from app.notifications.sender import Outcome, PushMessage, PushSender, backoff_s
from app.notifications.vapid import VapidSigner

logger = logging.getLogger(__name__)


@dataclass
class _Settled:
    finish: dict[str, Any]
    delivery: dict[str, Any]
    gone_subscription: uuid.UUID | None = None


class DeliveryWorker(OutboxWorker[repo.ClaimedJob, _Settled]):
    """The `webpush` channel: its rows of the outbox, capped per push-service origin."""

    notify_channel = repo.NOTIFY_CHANNEL

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
        super().__init__(
            sessionmaker=sessionmaker or create_sessionmaker(engine),
            listen_dsn=listen_dsn(engine),
            name=name or f"worker-{uuid.uuid4().hex[:8]}",
            concurrency=settings.push_worker_concurrency,
            batch=settings.push_worker_batch,
            per_key=settings.push_per_origin_concurrency,
            poll_interval_s=settings.push_poll_interval_s,
        )
        self.settings = settings
        self.engine = engine
        self._owns_sender = sender is None
        self.sender = sender or PushSender(settings, VapidSigner.from_settings(settings))
        self.rng = rng or random.Random()
        self._last_gauge = 0.0

    async def aclose(self) -> None:
        if self._owns_sender:
            await self.sender.aclose()

    # --- claiming --------------------------------------------------------------------------

    def key_of(self, job: repo.ClaimedJob) -> str:
        return job.origin

    async def claim(self, limit: int) -> list[repo.ClaimedJob]:
        async with self.sessionmaker() as session, session.begin():
            jobs = await repo.claim(session, limit, self.settings.push_lease_s, self.busy_keys())
            now = time.monotonic()
            if now - self._last_gauge >= self.settings.push_poll_interval_s:
                self._last_gauge = now
                PUSH_QUEUED.set(await repo.count_pending(session))
        return jobs

    async def release(self, jobs: list[repo.ClaimedJob]) -> None:
        async with self.sessionmaker() as session, session.begin():
            await repo.release(session, [(j.id, j.lease_token) for j in jobs])

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

    async def process(self, job: repo.ClaimedJob) -> None:
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
        await self.settled(
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

    async def record(self, items: list[_Settled]) -> None:
        """Settle a batch of attempts in one transaction (outbox rows, log, gone subscriptions)."""
        async with self.sessionmaker() as session, session.begin():
            await repo.finish(session, [i.finish for i in items])
            await repo.insert_deliveries(session, [i.delivery for i in items])
            gone = sorted({i.gone_subscription for i in items if i.gone_subscription is not None})
            await repo.delete_subscriptions(session, gone)


async def run_worker(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Run one worker until `stop` is set (the CLI and the API lifespan use this)."""
    worker = DeliveryWorker(settings, engine)
    task = asyncio.create_task(worker.run())
    await stop.wait()
    worker.stop()
    await task
