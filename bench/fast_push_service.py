"""A lightweight loopback push service for throughput runs (asyncio protocol + httptools).

The strict fake in tests/notifications/fake_push.py (an aiohttp app) verifies and decrypts every
message; on a 2-core machine its own ≈ 300 µs per request would be most of what a benchmark
measured, although a real push service's CPU is not on the sender's machine at all. This one
answers `201 Created` (with a `Location`, like FCM and autopush) at a few tens of µs per request
and still checks, for EVERY request:

* `POST /push/<token>`, HTTP/1.1 keep-alive handled by the client;
* `Content-Encoding: aes128gcm`, a numeric `TTL` > 0, `Urgency`/`Topic` valid when present;
* `Authorization: vapid t=<three base64url parts>, k=<the configured public key>`;
* the body: at most 4,096 bytes, an aes128gcm header with rs ≥ 18, a 65-byte key id that is an
  uncompressed P-256 point prefix (0x04) and at least one record of ciphertext + tag;

and for the first and then every `sample`-th request (default 50; the same requests whichever
sender is measured, so one that signs a new JWT per message pays no more here): the full ES256
signature and claims check (`aud` = this origin, `exp` in the future and ≤ 24 h, `sub`
mailto:/https:), and decryption of the body with the subscription's private key when the bench
gave it the keys (it does).

Anything that fails is answered 400 and counted in `violations`; `GET /stats` returns the counters
as JSON so the bench can fail a run whose messages were not valid.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, cast

import http_ece
import httptools
from cryptography.hazmat.primitives.asymmetric import ec

from tests.notifications.fake_push import verify_vapid_jwt

VAPID_RE = re.compile(
    rb"^vapid t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+),\s*k=([A-Za-z0-9_-]+)$"
)
TOPIC_RE = re.compile(rb"^[A-Za-z0-9]{1,32}$")
URGENCIES = {b"very-low", b"low", b"normal", b"high"}
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /message/%d\r\n\r\n"


def _b64url_decode(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


@dataclass
class Stats:
    requests: int = 0
    created: int = 0
    verified_jwt: int = 0
    decrypted: int = 0
    violations: int = 0
    last_violation: str = ""
    tokens_seen: set[bytes] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "created": self.created,
            "verified_jwt": self.verified_jwt,
            "decrypted": self.decrypted,
            "violations": self.violations,
            "last_violation": self.last_violation,
            "distinct_vapid_tokens": len(self.tokens_seen),
        }


class FastPushService:
    def __init__(
        self,
        vapid_public_key: str,
        keys: dict[str, tuple[bytes, bytes]] | None = None,
        host: str = "127.0.0.1",
        sample: int = 50,
    ) -> None:
        self.public_key_b64 = vapid_public_key.encode()
        self.public_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), _b64url_decode(vapid_public_key)
        )
        # token -> (private scalar, auth secret), for the sampled decryption check
        self.keys = keys or {}
        self.host = host
        self.sample = max(1, sample)
        self.stats = Stats()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FastPushService:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _violation(self, why: str) -> int:
        self.stats.violations += 1
        self.stats.last_violation = why
        return 400

    def handle(self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes) -> int:
        st = self.stats
        st.requests += 1
        if method != b"POST" or not url.startswith(b"/push/"):
            return self._violation(f"unexpected {method!r} {url[:60]!r}")
        if headers.get(b"content-encoding") != b"aes128gcm":
            return self._violation("Content-Encoding is not aes128gcm")
        ttl = headers.get(b"ttl", b"")
        if not ttl.isdigit() or int(ttl) == 0:
            return self._violation("TTL missing, not a number or 0")
        urgency = headers.get(b"urgency")
        if urgency is not None and urgency not in URGENCIES:
            return self._violation("bad Urgency")
        topic = headers.get(b"topic")
        if topic is not None and not TOPIC_RE.match(topic):
            return self._violation("bad Topic")
        match = VAPID_RE.match(headers.get(b"authorization", b""))
        if match is None:
            return self._violation("bad Authorization header")
        token, key = match.groups()
        if key != self.public_key_b64:
            return self._violation("VAPID k= is not the configured public key")
        n = len(body)
        if n > 4096:
            return self._violation("body over 4096 bytes")
        if n < 86 + 17 or int.from_bytes(body[16:20], "big") < 18 or body[20] != 65:
            return self._violation("body is not an aes128gcm record with a 65-byte key id")
        if body[21] != 0x04:
            return self._violation("key id is not an uncompressed P-256 point")
        st.tokens_seen.add(token)
        if st.requests % self.sample == 1:
            problem = self._full_check(token.decode(), url[6:].decode(), body)
            if problem:
                return self._violation(problem)
        st.created += 1
        return 201

    def _full_check(self, token: str, sub_token: str, body: bytes) -> str | None:
        claims = verify_vapid_jwt(token, self.public_key, self.origin)
        if isinstance(claims, str):
            return claims
        self.stats.verified_jwt += 1
        known = self.keys.get(sub_token)
        if known is not None:
            scalar, auth = known
            private = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
            try:
                plain = http_ece.decrypt(
                    body, private_key=private, auth_secret=auth, version="aes128gcm"
                )
                json.loads(plain)
            except Exception as exc:  # noqa: BLE001 - any failure is a protocol violation
                return f"cannot decrypt: {exc!r}"
            self.stats.decrypted += 1
        return None


class _Connection(asyncio.Protocol):
    def __init__(self, service: FastPushService) -> None:
        self.service = service
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.url == b"/stats":
            payload = json.dumps(self.service.stats.as_json()).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )
        else:
            method = self.parser.get_method()
            status = self.service.handle(method, self.url, self.headers, b"".join(self.body))
            if status == 201:
                self.transport.write(CREATED % self.service.stats.created)
            else:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        if not self.parser.should_keep_alive():
            self.transport.close()
