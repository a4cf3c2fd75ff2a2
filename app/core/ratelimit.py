"""Per-caller and per-IP rate limits (token buckets), answering 429 with `Retry-After`.

Buckets live in each API process's memory: cheap on the hot path, no extra infrastructure. With N
replicas the effective limit is up to N× the configured one, which is acceptable for abuse
protection (the goal is to stop floods, not to meter); put the same limits in the load balancer if
a hard global cap is needed.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from app.core.errors import TooManyRequests

MAX_MARKS = 100_000


@dataclass(frozen=True)
class Rule:
    per_minute: float
    burst: int


class RateLimiter:
    """Token buckets keyed by (scope, key); `hit` returns seconds to wait, or 0 when allowed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._marks: dict[tuple[str, str], float] = {}
        self._last_sweep = clock()

    def hit(self, scope: str, key: str, rule: Rule, cost: float = 1.0) -> float:
        now = self._clock()
        rate = rule.per_minute / 60.0
        tokens, stamp = self._buckets.get((scope, key), (float(rule.burst), now))
        tokens = min(float(rule.burst), tokens + (now - stamp) * rate)
        if tokens >= cost:
            self._buckets[(scope, key)] = (tokens - cost, now)
            self._sweep(now)
            return 0.0
        self._buckets[(scope, key)] = (tokens, now)
        return (cost - tokens) / rate if rate > 0 else math.inf

    def peek(self, scope: str, key: str, rule: Rule, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens would be available, without taking any."""
        now = self._clock()
        rate = rule.per_minute / 60.0
        tokens, stamp = self._buckets.get((scope, key), (float(rule.burst), now))
        tokens = min(float(rule.burst), tokens + (now - stamp) * rate)
        if tokens >= cost:
            return 0.0
        return (cost - tokens) / rate if rate > 0 else math.inf

    def _sweep(self, now: float) -> None:
        # Forget idle buckets now and then so memory stays flat under many distinct callers.
        if now - self._last_sweep < 60 or len(self._buckets) < 10_000:
            return
        self._last_sweep = now
        stale = [k for k, (_, stamp) in self._buckets.items() if now - stamp > 600]
        for k in stale:
            del self._buckets[k]

    def mark(self, scope: str, key: str) -> None:
        """Remember that `key` happened now (e.g. a successful login from an IP)."""
        now = self._clock()
        if len(self._marks) >= MAX_MARKS:
            oldest = sorted(self._marks.items(), key=lambda kv: kv[1])[: MAX_MARKS // 10]
            for k, _ in oldest:
                del self._marks[k]
        self._marks[(scope, key)] = now

    def marked_within(self, scope: str, key: str, seconds: float) -> bool:
        stamp = self._marks.get((scope, key))
        return stamp is not None and self._clock() - stamp <= seconds

    def reset(self) -> None:
        self._buckets.clear()
        self._marks.clear()


def client_ip(request: Request) -> str:
    """The peer address, or — only when the peer is one of `HEREABOUTS_TRUSTED_PROXIES` — the
    rightmost X-Forwarded-For entry that is not a trusted proxy (resolved into `request.client`
    by the ProxyHeadersMiddleware `create_app` installs; uvicorn gets the same list)."""
    return request.client.host if request.client else "unknown"


def caller_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    return _hash_key(auth)


def _hash_key(auth: str) -> str:
    return hashlib.blake2b(auth.encode(), digest_size=12).hexdigest()


def rate_limited(scope: str) -> Callable[[Request], Awaitable[None]]:
    """Dependency: apply the `scope` limits from settings per caller (token) and per client IP."""

    async def check(request: Request) -> None:
        settings = request.app.state.settings
        if not settings.rate_limit_enabled:
            return
        limiter: RateLimiter = request.app.state.rate_limiter
        # a minute's allowance may be used at once (burst), then it refills steadily
        caller_rate = settings.rate_limit_per_caller_per_minute.get(scope, 600.0)
        ip_rate = settings.rate_limit_per_ip_per_minute.get(scope, 6000.0)
        per_caller = Rule(caller_rate, max(1, math.ceil(caller_rate)))
        per_ip = Rule(ip_rate, max(1, math.ceil(ip_rate)))
        waits = [limiter.hit(f"{scope}:ip", client_ip(request), per_ip)]
        key = caller_key(request)
        if key is not None:
            waits.append(limiter.hit(f"{scope}:caller", key, per_caller))
        refuse_if_waiting(max(waits))

    return check


def take_if_free(
    settings: Any, limiter: RateLimiter, scope: str, asgi_scope: Any, auth: bytes | None
) -> bool:
    """`rate_limited(scope)` for a plain ASGI handler: take the request's tokens and say True
    when both buckets let it through; change nothing and say False when either would refuse
    (the route then applies the same limits and answers the 429)."""
    if not settings.rate_limit_enabled:
        return True
    caller_rate = settings.rate_limit_per_caller_per_minute.get(scope, 600.0)
    ip_rate = settings.rate_limit_per_ip_per_minute.get(scope, 6000.0)
    per_caller = Rule(caller_rate, max(1, math.ceil(caller_rate)))
    per_ip = Rule(ip_rate, max(1, math.ceil(ip_rate)))
    client = asgi_scope.get("client")
    ip = client[0] if client else "unknown"
    # caller_key's key, from the header's text as Starlette decodes it (latin-1)
    key = None if auth is None else _hash_key(auth.decode("latin-1"))
    if limiter.peek(f"{scope}:ip", ip, per_ip) > 0:
        return False
    if key is not None and limiter.peek(f"{scope}:caller", key, per_caller) > 0:
        return False
    limiter.hit(f"{scope}:ip", ip, per_ip)
    if key is not None:
        limiter.hit(f"{scope}:caller", key, per_caller)
    return True


def refuse_if_waiting(wait: float) -> None:
    """429 with `Retry-After` (whole seconds, at least 1) when a bucket says to wait."""
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many requests; retry in {seconds} s.",
            headers={"Retry-After": str(seconds)},
            extra={"retry_after_s": seconds},
        )


def login_throttle_key(username: str) -> str:
    return hashlib.blake2b(username.strip().lower().encode(), digest_size=12).hexdigest()
