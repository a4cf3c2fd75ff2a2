"""The Web Push sender: RFC 8291 encryption, RFC 8292 VAPID, RFC 8030 headers, answer classes.

One pooled keep-alive HTTP client (`app.notifications.http`: connect and total timeouts,
redirects never followed, only addresses that `AddressGuard` resolved and allowed are dialled),
a cap on concurrent requests per push-service origin, and per-subscription key material parsed
once (the ephemeral key and salt are new for every message, as RFC 8291 requires).

Why not httpx or aiohttp: on the same loopback fake push service httpx's pool managed 130-470
requests/s (its pool bookkeeping is O(connections × waiters) per request); aiohttp managed more
but cost ≈ 250 µs of CPU per request, as much as encryption and the database together. See
docs/benchmarks.md. Nothing here touches the database: the worker decides what a `SendResult`
means for the outbox.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import hashlib
import hmac
import os
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core.config import Settings
from app.notifications.endpoints import AddressGuard, EndpointRejected, origin_of
from app.notifications.http import HttpTransportError, PushHttpClient
from app.notifications.vapid import VapidSigner, b64url_decode

# RFC 8030 §7.2: push services must accept at least 4096 bytes of (encrypted) payload.
MAX_BODY_BYTES = 4096
# aes128gcm overhead for one record: 86-byte header (salt 16, rs 4, idlen 1, keyid 65),
# 1 padding delimiter byte and a 16-byte tag.
ENCRYPTION_OVERHEAD = 86 + 1 + 16
MAX_PLAINTEXT_BYTES = MAX_BODY_BYTES - ENCRYPTION_OVERHEAD
TOPIC_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
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


def _hkdf_one_block(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA-256 (RFC 5869) for outputs of at most one hash block (all RFC 8291 needs)."""
    prk = hmac.digest(salt, ikm, hashlib.sha256)
    return hmac.digest(prk, info + b"\x01", hashlib.sha256)[:length]


_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_RS = (4096).to_bytes(4, "big")


def encrypt(
    payload: bytes,
    p256dh: bytes | ec.EllipticCurvePublicKey,
    auth: bytes,
    *,
    salt: bytes | None = None,
    sender_key: ec.EllipticCurvePrivateKey | None = None,
    p256dh_raw: bytes | None = None,
) -> bytes:
    """RFC 8291 aes128gcm, one record (rs 4096): a fresh ephemeral key and salt per message
    unless given (tests). Checked against RFC 8291 Appendix A and against `http_ece.decrypt`."""
    if isinstance(p256dh, bytes):
        ua_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
        ua_raw = p256dh
    else:
        ua_public = p256dh
        ua_raw = p256dh_raw or p256dh.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    key = sender_key or ec.generate_private_key(ec.SECP256R1())
    as_raw = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = key.exchange(ec.ECDH(), ua_public)
    # RFC 8291 §3.3-3.4: IKM from the ECDH secret and the auth secret, then RFC 8188 keys.
    ikm = _hkdf_one_block(auth, shared, b"WebPush: info\x00" + ua_raw + as_raw, 32)
    salt = salt or os.urandom(16)
    prk = hmac.digest(salt, ikm, hashlib.sha256)
    cek = hmac.digest(prk, _CEK_INFO, hashlib.sha256)[:16]
    nonce = hmac.digest(prk, _NONCE_INFO, hashlib.sha256)[:12]
    # one record, the last: the padding delimiter 0x02 and no padding
    record = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)
    return salt + _RS + b"\x41" + as_raw + record


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


class _Limit:
    """A per-origin concurrency cap: like `asyncio.Semaphore`, without its O(waiters) check on
    every uncontended acquire (which showed up at 4 % of the sender's CPU)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot straight to us
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # we were handed a slot but are going away: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


@dataclass(frozen=True, slots=True)
class _Peer:
    """A subscription's key material, decoded and curve-checked once (not per message)."""

    public_key: ec.EllipticCurvePublicKey
    raw: bytes
    auth: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    origin: str


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
        self._http: PushHttpClient | None = None
        self._limits: dict[str, _Limit] = {}
        self._static: dict[str, tuple[str, bytes]] = {}
        self._peers: dict[tuple[str, str], _Peer] = {}
        self._targets: dict[str, _Target] = {}

    def _peer(self, p256dh: str, auth: str) -> _Peer:
        peer = self._peers.get((p256dh, auth))
        if peer is None:
            if len(self._peers) >= PEER_KEY_CACHE:
                self._peers.clear()
            raw = b64url_decode(p256dh)
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
            peer = self._peers[(p256dh, auth)] = _Peer(key, raw, b64url_decode(auth))
        return peer

    def _target(self, endpoint: str) -> _Target:
        target = self._targets.get(endpoint)
        if target is None:
            if len(self._targets) >= PEER_KEY_CACHE:
                self._targets.clear()
            parts = urlsplit(endpoint)
            scheme = parts.scheme
            if scheme not in ("https", "http"):
                raise ValueError("the endpoint must be an http(s) URL")
            path = parts.path or "/"
            if parts.query:
                path = f"{path}?{parts.query}"
            target = self._targets[endpoint] = _Target(
                scheme,
                parts.hostname or "",
                parts.port or (443 if scheme == "https" else 80),
                path,
                origin_of(endpoint),
            )
        return target

    def _client(self) -> PushHttpClient:
        """The one pooled client, created on first use."""
        if self._http is None:
            s = self.settings
            self._http = PushHttpClient(
                self.guard,
                connect_timeout_s=s.push_connect_timeout_s,
                total_timeout_s=s.push_timeout_s,
                max_idle_per_origin=self.per_origin,
            )
        return self._http

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

    def _head(self, msg: PushMessage, origin: str) -> bytes:
        """The request's header lines (values checked: nothing can inject a line)."""
        if msg.urgency not in URGENCIES:
            raise ValueError("Urgency must be very-low, low, normal or high")
        topic = b""
        if msg.topic:
            if not TOPIC_RE.match(msg.topic):
                raise ValueError("Topic must be 1-32 characters from [A-Za-z0-9]")
            topic = b"Topic: %s\r\n" % msg.topic.encode("ascii")
        return b"%sTTL: %d\r\nUrgency: %s\r\n%s" % (
            self._static_head(origin),
            max(0, msg.ttl_s),
            msg.urgency.encode("ascii"),
            topic,
        )

    def _static_head(self, origin: str) -> bytes:
        """The lines every message to `origin` shares, rebuilt when the VAPID JWT is renewed."""
        authorization = self.signer.authorization(origin)
        cached = self._static.get(origin)
        if cached is None or cached[0] is not authorization:
            cached = self._static[origin] = (
                authorization,
                b"Content-Type: application/octet-stream\r\nContent-Encoding: aes128gcm\r\n"
                b"Authorization: %s\r\n" % authorization.encode("ascii"),
            )
        return cached[1]

    def prepare(self, msg: PushMessage) -> tuple[str, bytes, dict[str, str]]:
        """Encrypt and sign: (origin, body, headers). Raises `PayloadTooLarge` before any I/O."""
        body = self._encrypt(msg)
        origin = origin_of(msg.endpoint)
        return origin, body, self.build_headers(msg, origin)

    def _encrypt(self, msg: PushMessage) -> bytes:
        if len(msg.payload) > MAX_PLAINTEXT_BYTES:
            raise PayloadTooLarge(
                f"payload of {len(msg.payload)} bytes exceeds {MAX_PLAINTEXT_BYTES} bytes"
            )
        peer = self._peer(msg.p256dh, msg.auth)
        body = encrypt(msg.payload, peer.public_key, peer.auth, p256dh_raw=peer.raw)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"encrypted body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        return body

    async def send(self, msg: PushMessage) -> SendResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            target = self._target(msg.endpoint)
            body = self._encrypt(msg)
            head = self._head(msg, target.origin)
        except (PayloadTooLarge, ValueError) as exc:
            return SendResult(Outcome.failed, None, elapsed(), str(exc)[:500])
        limit = self._limits.get(target.origin)
        if limit is None:
            limit = self._limits[target.origin] = _Limit(self.per_origin)
        await limit.acquire()
        try:
            try:
                answer = await self._client().post(
                    target.scheme, target.host, target.port, target.path, head, body
                )
            except EndpointRejected as exc:
                return SendResult(Outcome.failed, None, elapsed(), str(exc))
            except TimeoutError as exc:
                return SendResult(Outcome.retry, None, elapsed(), f"timeout: {type(exc).__name__}")
            except (HttpTransportError, OSError) as exc:
                return SendResult(Outcome.retry, None, elapsed(), f"transport: {exc!r}"[:500])
        finally:
            limit.release()
        status = answer.status
        outcome, retry_after = classify(status, answer.retry_after)
        error = None
        if outcome is not Outcome.delivered:
            error = f"HTTP {status}: {answer.detail.decode('utf-8', 'replace')}"
        return SendResult(outcome, status, elapsed(), error, retry_after)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
