"""The webhook channel's worker: claim due messages, sign, POST, record every attempt.

The loop is the one every channel shares (`app.notifications.outbox.OutboxWorker`, like Web
Push): rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease + token, settled only under
that token, woken by `LISTEN hereabouts_webhooks` and by polling. The channel's own policies:

* **concurrency**: `webhook_worker_concurrency` requests in flight, at most
  `webhook_per_endpoint_concurrency` per endpoint (an endpoint at its cap is not claimed), so a
  hanging receiver holds only its own slots until `webhook_timeout_s`;
* **answers**: 2xx delivered; 410 disables the endpoint at once; anything else (3xx — redirects
  are never followed —, 4xx, 5xx, timeouts, refused addresses) is retried after
  `uniform(0, min(cap, base · 2^(attempt-1)))` (429/503 with `Retry-After`: that delay, at
  most 6 h) until the message is `webhook_retry_for_s` old (3 days), then it is dead;
* **circuit breaker**: an endpoint whose failures started `webhook_retry_for_s` ago without a
  success since is disabled, and its organisation's admins get an inbox notification;
* **SSRF**: the HTTP client dials only addresses `AddressGuard` allows, resolved at connect time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.core.listen import listen_dsn
from app.notifications.endpoints import AddressGuard, EndpointRejected
from app.notifications.http import PushHttpClient
from app.notifications.outbox import OutboxWorker
from app.notifications.sender import backoff_s, parse_retry_after
from app.webhooks import repository as repo
from app.webhooks import secretbox, service, signing
from app.webhooks.metrics import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_IN_FLIGHT,
    WEBHOOK_LATENCY,
    WEBHOOK_QUEUED,
)
from app.webhooks.models import AttemptStatus, MessageStatus

logger = logging.getLogger(__name__)


@dataclass
class _Settled:
    finish: dict[str, Any]
    attempt: dict[str, Any]
    endpoint_id: uuid.UUID
    message_id: uuid.UUID
    ok: bool
    gone: bool
    # the message used up its retry window (dead of age, not of a 410)
    expired: bool = False


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    latency_ms: float | None
    error: str | None
    retry_after_s: float | None = None


class WebhookWorker(OutboxWorker[repo.ClaimedMessage, _Settled]):
    """The `webhook` channel: its rows of the outbox, capped per endpoint."""

    notify_channel = repo.NOTIFY_CHANNEL

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        guard: AddressGuard | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            sessionmaker=sessionmaker or create_sessionmaker(engine),
            listen_dsn=listen_dsn(engine),
            name=name or f"webhooks-{uuid.uuid4().hex[:8]}",
            concurrency=settings.webhook_worker_concurrency,
            batch=settings.webhook_worker_concurrency,
            per_key=settings.webhook_per_endpoint_concurrency,
            poll_interval_s=settings.webhook_poll_interval_s,
        )
        self.settings = settings
        self.guard = guard or AddressGuard(allow_loopback=settings.webhook_allow_loopback)
        self.client = PushHttpClient(
            self.guard,
            connect_timeout_s=settings.webhook_connect_timeout_s,
            total_timeout_s=settings.webhook_timeout_s,
            user_agent="hereabouts-webhooks/1",
        )
        self.rng = rng or random.Random()
        self._last_gauge = 0.0
        self._secrets: dict[str, str] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    def _open(self, stored: str) -> str:
        """An endpoint's secret as stored (sealed), opened once per worker and kept in memory."""
        secret = self._secrets.get(stored)
        if secret is None:
            if len(self._secrets) >= 4096:
                self._secrets.clear()
            secret = self._secrets[stored] = secretbox.open_sealed(self.settings, stored)
        return secret

    # --- claiming -----------------------------------------------------------------------------

    def key_of(self, job: repo.ClaimedMessage) -> uuid.UUID:
        return job.endpoint_id

    async def claim(self, limit: int) -> list[repo.ClaimedMessage]:
        async with self.sessionmaker() as session, session.begin():
            busy = self.busy_keys()
            jobs = await repo.claim(session, limit, self.settings.webhook_lease_s, busy)
            now = time.monotonic()
            if now - self._last_gauge >= self.settings.webhook_poll_interval_s:
                self._last_gauge = now
                WEBHOOK_QUEUED.set(await repo.count_pending(session))
        return jobs

    async def release(self, jobs: list[repo.ClaimedMessage]) -> None:
        async with self.sessionmaker() as session, session.begin():
            await repo.release(session, [(j.id, j.lease_token) for j in jobs])

    # --- sending ------------------------------------------------------------------------------

    async def post(self, job: repo.ClaimedMessage) -> _Answer:
        """Sign and POST one message; never raises for the receiver's sake."""
        body = job.payload.encode()
        ts = int(time.time())
        try:
            keys = service.signing_secrets(
                self._open(job.secret),
                None if job.previous_secret is None else self._open(job.previous_secret),
                job.previous_secret_until,
                job.now,
            )
        except secretbox.SecretKeyError as exc:  # retried: the key may be configured meanwhile
            return _Answer(None, None, f"cannot sign: {exc}"[:500])
        head = (
            "Content-Type: application/json\r\n"
            f"webhook-id: {job.msg_id}\r\n"
            f"webhook-timestamp: {ts}\r\n"
            f"webhook-signature: {signing.signature_header(keys, job.msg_id, ts, body)}\r\n"
        ).encode()
        parts = urlsplit(job.url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        started = time.perf_counter()
        try:
            answer = await self.client.post(scheme, parts.hostname or "", port, target, head, body)
        except EndpointRejected as exc:
            return _Answer(None, None, f"refused at connect time: {exc}")
        except TimeoutError:
            return _Answer(None, (time.perf_counter() - started) * 1000, "timed out")
        except (ConnectionError, OSError, ValueError) as exc:
            return _Answer(None, None, f"{type(exc).__name__}: {exc}"[:500])
        latency = (time.perf_counter() - started) * 1000
        error = None
        if not 200 <= answer.status < 300:
            error = answer.detail.decode("utf-8", "replace")[:300] or f"HTTP {answer.status}"
        retry_after = parse_retry_after(answer.retry_after) if answer.status in (429, 503) else None
        return _Answer(answer.status, latency, error, retry_after)

    async def process(self, job: repo.ClaimedMessage) -> None:
        attempted_at = datetime.now(UTC)
        WEBHOOK_IN_FLIGHT.inc()
        try:
            answer = await self.post(job)
        finally:
            WEBHOOK_IN_FLIGHT.dec()
        self.stats.sent += 1
        label = str(job.endpoint_id)
        if answer.latency_ms is not None and answer.status is not None:
            WEBHOOK_LATENCY.labels(label).observe(answer.latency_ms / 1000)
        ok = answer.status is not None and 200 <= answer.status < 300
        gone = answer.status == 410
        expired = False
        age = job.now - job.created_at
        if ok:
            status, astatus, delay = MessageStatus.delivered, AttemptStatus.delivered, 0.0
        elif gone or age >= timedelta(seconds=self.settings.webhook_retry_for_s):
            status, astatus, delay = MessageStatus.dead, AttemptStatus.dead, 0.0
            expired = not gone
        else:
            status, astatus = MessageStatus.pending, AttemptStatus.retry
            delay = backoff_s(
                job.attempts,
                self.settings.webhook_backoff_base_s,
                self.settings.webhook_backoff_cap_s,
                self.rng,
            )
            if answer.retry_after_s is not None:  # 429/503 with Retry-After: as asked (≤ 6 h)
                delay = answer.retry_after_s
        metric = {"delivered": "delivered", "retry": "retried", "dead": "dead"}[astatus.value]
        WEBHOOK_ATTEMPTS.labels(label, metric).inc()
        self.stats.outcomes[metric] = self.stats.outcomes.get(metric, 0) + 1
        await self.settled(
            _Settled(
                finish={
                    "id": job.id,
                    "token": job.lease_token,
                    "status": status.value,
                    "delay_s": float(delay),
                    "error": answer.error,
                },
                attempt={
                    "id": uuid.uuid4(),
                    "organisation_id": job.organisation_id,
                    "endpoint_id": job.endpoint_id,
                    "message_id": job.id,
                    "msg_id": job.msg_id,
                    "attempt": job.attempts,
                    "attempted_at": attempted_at,
                    "status": astatus.value,
                    "http_status": answer.status,
                    "latency_ms": answer.latency_ms,
                    "error": answer.error,
                },
                endpoint_id=job.endpoint_id,
                message_id=job.id,
                ok=ok,
                gone=gone,
                expired=expired,
            )
        )

    # --- recording ----------------------------------------------------------------------------

    async def record(self, items: list[_Settled]) -> None:
        """Settle attempts in one transaction: messages, the log, the circuit breaker."""
        now = datetime.now(UTC)
        window = timedelta(seconds=self.settings.webhook_retry_for_s)
        async with self.sessionmaker() as session, session.begin():
            await repo.finish(session, [i.finish for i in items])
            await repo.insert_attempts(session, [i.attempt for i in items])
            healthy = sorted({i.endpoint_id for i in items if i.ok})
            failing = sorted({i.endpoint_id for i in items if not i.ok} - set(healthy))
            await repo.mark_healthy(session, healthy)
            # the streak starts at the batch's first failed attempt (not at this write)
            first_failure = min((i.attempt["attempted_at"] for i in items if not i.ok), default=now)
            since = await repo.mark_failing(session, failing, first_failure)
            for endpoint_id in sorted({i.endpoint_id for i in items if i.gone}):
                await service.disable(
                    session, endpoint_id, "the receiver answered 410 Gone", self.settings
                )
            # A message that used up its window while its endpoint never succeeded since the
            # message's first attempt trips the breaker too: the message is older than the
            # endpoint's failing streak (it was written before its first attempt failed), so
            # without this an endpoint whose last message died first would stay enabled.
            for item in items:
                started = since.get(item.endpoint_id)
                if item.expired and started is not None:
                    first = await repo.first_attempt_at(session, item.message_id)
                    if first is not None and started <= first:
                        since[item.endpoint_id] = now - window
            for endpoint_id, started in since.items():
                if now - started >= window:
                    days = window.total_seconds() / 86_400
                    await service.disable(
                        session,
                        endpoint_id,
                        f"every delivery failed for {days:g} days",
                        self.settings,
                    )


async def run_webhook_worker(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    worker = WebhookWorker(settings, engine)
    task = asyncio.create_task(worker.run())
    await stop.wait()
    worker.stop()
    await task
