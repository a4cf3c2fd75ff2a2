"""A fake push service (aiohttp on a loopback port) that behaves like a strict real one.

For every request it checks the RFC 8030/8291/8292 headers, verifies the VAPID JWT (ES256
signature against the expected public key, `aud` = its own origin, `exp` in the future and at most
24 h ahead, `sub` a mailto:/https: URL), and decrypts the aes128gcm body with the subscription's
private key. A request that fails any check gets 400 and is listed in `violations`.

Answers can be scripted per subscription: a queue of actions (`201`, `404`, `410`, `413`,
`(429, "Retry-After value")`, `500`, `"hang"`), falling back to `default` (201).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

Action = int | tuple[int, str] | str
TOPIC_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
URGENCIES = {"very-low", "low", "normal", "high"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def verify_vapid_jwt(
    token: str, public_key: ec.EllipticCurvePublicKey, origin: str
) -> dict[str, Any] | str:
    """RFC 8292 checks of a VAPID JWT: ES256 signature, `aud` = the push service's origin,
    `exp` at most 24 h ahead, `sub` a mailto: or https: contact. The claims, or what is wrong."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            audience=origin,
            options={"require": ["aud", "exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        return f"VAPID JWT rejected: {exc}"
    if claims["exp"] > time.time() + 24 * 3600:
        return "VAPID exp more than 24 h ahead"
    if not str(claims["sub"]).startswith(("mailto:", "https://")):
        return "VAPID sub is not mailto:/https:"
    return claims


@dataclass
class FakeSubscription:
    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    @property
    def auth_b64(self) -> str:
        return b64url(self.auth)

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth_b64},
        }


@dataclass
class Received:
    token: str
    plaintext: bytes
    headers: dict[str, str]
    claims: dict[str, Any]
    answered: int


@dataclass
class FakePushService:
    vapid_public_key: str
    host: str = "127.0.0.1"
    default: Action = 201
    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)
    scripts: dict[str, list[Action]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    requests: int = 0
    hanging: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    decrypt: bool = True
    verify: bool = True  # False only in the benchmark: answer 201 without checking anything
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def subscribe(self) -> FakeSubscription:
        token = secrets.token_urlsafe(16)
        sub = FakeSubscription(
            token=token,
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
        )
        self.subscriptions[token] = sub
        return sub

    def script(self, sub: FakeSubscription, *actions: Action) -> None:
        self.scripts.setdefault(sub.token, []).extend(actions)

    def deliveries_per_message(self) -> Counter[tuple[str, bytes]]:
        return Counter((r.token, r.plaintext) for r in self.received if r.answered < 300)

    async def start(self) -> FakePushService:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _violation(self, message: str) -> web.Response:
        self.violations.append(message)
        return web.Response(status=400, text=message)

    def _check_vapid(self, authorization: str) -> dict[str, Any] | str:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", authorization)
        if not match:
            return f"bad Authorization header: {authorization[:40]!r}"
        token, key = match.groups()
        if key != self.vapid_public_key:
            return "VAPID k= is not the configured public key"
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(self.vapid_public_key)
        )
        return verify_vapid_jwt(token, public, self.origin)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        token = request.match_info["token"]
        sub = self.subscriptions.get(token)
        body = await request.read()
        h = request.headers
        if not self.verify:
            return web.Response(status=201)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._violation("Content-Encoding is not aes128gcm")
        ttl = h.get("TTL", "")
        if not ttl.isdigit():
            return self._violation("TTL missing or not a number")
        if int(ttl) == 0:
            return self._violation("TTL is 0")
        if "Urgency" in h and h["Urgency"] not in URGENCIES:
            return self._violation("bad Urgency")
        if "Topic" in h and not TOPIC_RE.match(h["Topic"]):
            return self._violation("bad Topic")
        if len(body) > 4096:
            return self._violation("body over 4096 bytes")
        claims = self._check_vapid(h.get("Authorization", ""))
        if isinstance(claims, str):
            return self._violation(claims)
        if sub is None:
            return web.Response(status=404, text="no such subscription")
        plaintext = b""
        if self.decrypt:
            try:
                plaintext = http_ece.decrypt(
                    body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
                )
            except Exception as exc:  # noqa: BLE001 - any failure is a protocol violation
                return self._violation(f"cannot decrypt: {exc!r}")
        queue = self.scripts.get(token)
        action: Action = queue.pop(0) if queue else self.default
        if action == "hang":
            self.hanging += 1
            try:
                await self.release.wait()
            finally:
                self.hanging -= 1
            action = 201
        headers: dict[str, str] = {}
        if isinstance(action, tuple):
            status, retry_after = action
            headers["Retry-After"] = retry_after
        else:
            assert isinstance(action, int)
            status = action
        self.received.append(Received(token, plaintext, dict(h), claims, status))
        if status == 201:
            headers["Location"] = f"{self.origin}/message/{secrets.token_hex(8)}"
        return web.Response(status=status, headers=headers)
