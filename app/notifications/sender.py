"""The Web Push sender: RFC 8291 encryption, RFC 8292 VAPID, RFC 8030 headers, answer classes.

One pooled `aiohttp.ClientSession` (connect and total timeouts, redirects never followed, TCP
keep-alive), a cap on concurrent requests per push-service origin, and a resolved-address check
before every send plus a resolver that refuses non-global addresses at connect time (so a DNS
answer that changes between the check and the dial cannot reach inside either).

Why aiohttp and not httpx: on the same loopback fake push service httpx's pool managed 130-470
requests/s (its pool bookkeeping is O(connections × waiters) per request) against 1,600-5,600 for
aiohttp; the fan-out target (≥ 3,000/s) is out of reach with httpx. See docs/benchmarks.md.
Nothing here touches the database: the worker decides what a `SendResult` means for the outbox.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

import aiohttp
import http_ece
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.config import Settings
from app.notifications.endpoints import (
    AddressGuard,
    EndpointRejected,
    address_allowed,
    origin_of,
)
from app.notifications.vapid import VapidSigner, b64url_decode

# RFC 8030 §7.2: push services must accept at least 4096 bytes of (encrypted) payload.
MAX_BODY_BYTES = 4096
# aes128gcm overhead for one record: 86-byte header (salt 16, rs 4, idlen 1, keyid 65),
# 1 padding delimiter byte and a 16-byte tag.
ENCRYPTION_OVERHEAD = 86 + 1 + 16
MAX_PLAINTEXT_BYTES = MAX_BODY_BYTES - ENCRYPTION_OVERHEAD
TOPIC_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
MAX_RETRY_AFTER_S = 6 * 3600.0
PEER_KEY_CACHE = 50_000


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    gone = "gone"
    failed = "failed"


@dataclass(frozen=True)
class PushMessage:
    endpoint: str
    p256dh: str
    auth: str
    payload: bytes
    ttl_s: int
    urgency: str = "normal"
    topic: str | None = None


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    http_status: int | None
    latency_ms: float
    error: str | None = None
    retry_after_s: float | None = None


class PayloadTooLarge(ValueError):
    """The encrypted body would exceed the 4,096 bytes every push service accepts."""


def encrypt(
    payload: bytes,
    p256dh: bytes | ec.EllipticCurvePublicKey,
    auth: bytes,
    *,
    salt: bytes | None = None,
    sender_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """RFC 8291 aes128gcm: a fresh ephemeral key and salt per message unless given (tests)."""
    body: bytes = http_ece.encrypt(
        payload,
        salt=salt,
        private_key=sender_key or ec.generate_private_key(ec.SECP256R1()),
        dh=p256dh,
        auth_secret=auth,
        version="aes128gcm",
        rs=4096,
    )
    return body


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP-date → seconds from now (None if unusable)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return min(max(0.0, (when - now_dt).total_seconds()), MAX_RETRY_AFTER_S)


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, base · 2^(attempt-1)))."""
    ceiling = min(cap_s, base_s * (2 ** max(0, min(attempt - 1, 30))))
    return (rng or random).uniform(0, ceiling)


def classify(status: int, retry_after: str | None = None) -> tuple[Outcome, float | None]:
    """Map a push service answer to what happens next (and a server-requested delay)."""
    if 200 <= status < 300:
        return Outcome.delivered, None
    if status in (404, 410):
        return Outcome.gone, None
    if status == 429:
        return Outcome.retry, parse_retry_after(retry_after)
    if status == 408 or status >= 500:
        return Outcome.retry, parse_retry_after(retry_after) if status == 503 else None
    return Outcome.failed, None


class GuardedResolver(AbstractResolver):
    """Resolves like the OS but refuses to hand the connector any non-global address."""

    def __init__(self, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family
        )
        results: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            if not address_allowed(address, self.allow_loopback):
                raise OSError(f"refusing non-global address for {host}")
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": int(sockaddr[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise OSError(f"{host} does not resolve")
        return results

    async def close(self) -> None:
        return None


class PushSender:
    """Sends one `PushMessage` at a time; safe to share between many concurrent tasks."""

    def __init__(
        self,
        settings: Settings,
        signer: VapidSigner,
        *,
        guard: AddressGuard | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.per_origin = max(1, settings.push_per_origin_concurrency)
        self.guard = guard or AddressGuard(allow_loopback=settings.push_allow_loopback)
        self._session: aiohttp.ClientSession | None = None
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._peer_keys: dict[str, ec.EllipticCurvePublicKey] = {}

    def _peer_key(self, p256dh: str) -> ec.EllipticCurvePublicKey:
        """The subscription's public key, parsed (and curve-checked) once, not per message."""
        key = self._peer_keys.get(p256dh)
        if key is None:
            if len(self._peer_keys) >= PEER_KEY_CACHE:
                self._peer_keys.clear()
            key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(p256dh)
            )
            self._peer_keys[p256dh] = key
        return key

    def _client(self) -> aiohttp.ClientSession:
        """The one pooled session, created on first use (it needs a running event loop)."""
        if self._session is None or self._session.closed:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=max(s.push_worker_concurrency, self.per_origin),
                limit_per_host=self.per_origin,
                resolver=GuardedResolver(s.push_allow_loopback),
                ttl_dns_cache=60,
                keepalive_timeout=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=s.push_timeout_s, sock_connect=s.push_connect_timeout_s
                ),
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "hereabouts-push/0.1"},
            )
        return self._session

    def build_headers(self, msg: PushMessage, origin: str) -> dict[str, str]:
        headers = {
            "TTL": str(max(0, msg.ttl_s)),
            "Urgency": msg.urgency,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.signer.authorization(origin),
        }
        if msg.topic:
            if not TOPIC_RE.match(msg.topic):
                raise ValueError("Topic must be 1-32 characters from [A-Za-z0-9]")
            headers["Topic"] = msg.topic
        return headers

    def prepare(self, msg: PushMessage) -> tuple[str, bytes, dict[str, str]]:
        """Encrypt and sign: (origin, body, headers). Raises `PayloadTooLarge` before any I/O."""
        if len(msg.payload) > MAX_PLAINTEXT_BYTES:
            raise PayloadTooLarge(
                f"payload of {len(msg.payload)} bytes exceeds {MAX_PLAINTEXT_BYTES} bytes"
            )
        body = encrypt(msg.payload, self._peer_key(msg.p256dh), b64url_decode(msg.auth))
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"encrypted body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        origin = origin_of(msg.endpoint)
        return origin, body, self.build_headers(msg, origin)

    async def send(self, msg: PushMessage) -> SendResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            origin, body, headers = self.prepare(msg)
        except (PayloadTooLarge, ValueError) as exc:
            return SendResult(Outcome.failed, None, elapsed(), str(exc)[:500])
        parts = urlsplit(msg.endpoint)
        sem = self._semaphores.get(origin)
        if sem is None:
            sem = self._semaphores[origin] = asyncio.Semaphore(self.per_origin)
        async with sem:
            try:
                await self.guard.check(
                    parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
                )
            except EndpointRejected as exc:
                return SendResult(Outcome.failed, None, elapsed(), str(exc))
            try:
                async with self._client().post(
                    msg.endpoint, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    retry_header = response.headers.get("Retry-After")
                    detail = b""
                    if not 200 <= status < 300:
                        detail = await response.content.read(300)
            except TimeoutError as exc:
                return SendResult(Outcome.retry, None, elapsed(), f"timeout: {type(exc).__name__}")
            except (aiohttp.ClientError, OSError) as exc:
                return SendResult(Outcome.retry, None, elapsed(), f"transport: {exc!r}"[:500])
        outcome, retry_after = classify(status, retry_header)
        error = None
        if outcome is not Outcome.delivered:
            error = f"HTTP {status}: {detail.decode('utf-8', 'replace')}"
        return SendResult(outcome, status, elapsed(), error, retry_after)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
