from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core.ratelimit import RateLimiter, Rule


def test_token_bucket_allows_burst_then_asks_to_wait_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    rule = Rule(per_minute=60, burst=3)  # one token per second
    assert [limiter.hit("s", "k", rule) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.hit("s", "k", rule)
    assert 0.9 < wait <= 1.0
    assert limiter.hit("s", "other", rule) == 0.0  # keys are independent
    now[0] += 1.0
    assert limiter.hit("s", "k", rule) == 0.0


async def test_device_registration_flood_from_one_ip_gets_429_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"rate_limit_per_ip_per_minute": {"devices": 3}}
    )
    body = {"organisation": "no-such-organisation"}
    statuses = [(await client.post("/v1/devices", json=body)).status_code for _ in range(5)]
    # the first ones fail validation of the organisation (it does not exist) but still count
    assert statuses[:3] == [422, 422, 422]
    assert statuses[3:] == [429, 429]
    resp = await client.post("/v1/devices", json=body)
    assert resp.headers["retry-after"].isdigit()
