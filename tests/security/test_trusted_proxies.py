"""Issue 18, finding 8: X-Forwarded-For is believed only from HEREABOUTS_TRUSTED_PROXIES.

Before the fix uvicorn trusted the header from loopback (its `forwarded_allow_ips` default), so
rotating it from 127.0.0.1 escaped every per-IP limit; and there was no way to name a load
balancer that is not on loopback, so behind one every client shared one bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.db import get_session
from app.main import create_app
from tests.live import live_server

LIMIT = 3


def _app(settings: Settings, engine: AsyncEngine, db: AsyncSession, proxies: list[str]) -> Any:
    app = create_app(
        settings.model_copy(
            update={
                "trusted_proxies": proxies,
                "rate_limit_per_ip_per_minute": {"devices": float(LIMIT)},
            }
        ),
        engine=engine,
    )

    async def session_override() -> AsyncIterator[AsyncSession]:
        yield db
        await db.rollback()

    app.dependency_overrides[get_session] = session_override
    return app


async def _statuses(
    app: Any, peer: str, forwarded: Sequence[str | None], org: str = "no-such-org"
) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        out = []
        for xff in forwarded:
            headers = {"X-Forwarded-For": xff} if xff else {}
            res = await c.post("/v1/devices", json={"organisation": org}, headers=headers)
            out.append(res.status_code)
        return out


async def test_app_ignores_forwarded_for_from_an_untrusted_peer(
    settings: Settings, engine: AsyncEngine, db: AsyncSession
) -> None:
    for proxies in ([], ["10.0.0.0/8"]):
        app = _app(settings, engine, db, proxies)
        rotating = [f"203.0.113.{i}" for i in range(LIMIT + 2)]
        # 127.0.0.1 is not special: loopback is as untrusted as anyone unless listed
        statuses = await _statuses(app, "127.0.0.1", rotating)
        assert statuses[:LIMIT] == [422] * LIMIT  # unknown organisation: the limit let it in
        assert statuses[LIMIT:] == [429, 429]


async def test_app_honours_the_rightmost_untrusted_entry_from_a_trusted_proxy(
    settings: Settings, engine: AsyncEngine, db: AsyncSession
) -> None:
    app = _app(settings, engine, db, ["10.0.0.0/8", "192.0.2.1"])
    # each real client gets its own bucket behind the proxy
    per_client = [f"198.51.100.{i}" for i in range(LIMIT + 2)]
    assert 429 not in await _statuses(app, "10.1.2.3", per_client)
    # a client spoofing entries to the left of the one the proxy appended is still itself;
    # proxies in the chain (10.x, 192.0.2.1) are skipped from the right
    spoofed = [f"6.6.6.{i}, 198.51.100.200, 192.0.2.1" for i in range(LIMIT + 2)]
    statuses = await _statuses(app, "10.1.2.3", spoofed)
    assert statuses[LIMIT:] == [429, 429]
    # without the header, the proxy itself is the client
    assert (await _statuses(app, "10.9.9.9", [None] * (LIMIT + 1)))[-1] == 429


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies=["10.0.0.0/8", "::1", "192.0.2.7"]).trusted_proxies
    for bad in (["*"], ["proxy.internal"], ["10.0.0.0/33"]):
        with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
            Settings(trusted_proxies=bad)


# --- the real server: uvicorn's own proxy-header handling gets the same list --------------


@pytest.fixture(scope="module")
def proxied_server(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    env = {
        "HEREABOUTS_RATE_LIMIT_ENABLED": "true",
        "HEREABOUTS_RATE_LIMIT_PER_IP_PER_MINUTE": f'{{"devices": {LIMIT}}}',
        # 127.0.0.2 plays the load balancer; 127.0.0.1 is any other local process
        "HEREABOUTS_TRUSTED_PROXIES": '["127.0.0.2"]',
    }
    with live_server(pg_cluster, "hereabouts_proxies", extra_env=env) as server:
        yield server.base


def _live_statuses(base: str, source: str, forwarded: list[str]) -> list[int]:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=base, timeout=20) as c:
        return [
            c.post(
                "/v1/devices",
                json={"organisation": "nowhere"},
                headers={"X-Forwarded-For": xff},
            ).status_code
            for xff in forwarded
        ]


def test_served_rotating_forwarded_for_from_loopback_does_not_escape_the_limit(
    proxied_server: str,
) -> None:
    statuses = _live_statuses(
        proxied_server, "127.0.0.1", [f"203.0.113.{i}" for i in range(LIMIT + 2)]
    )
    assert statuses[LIMIT:] == [429, 429], statuses


def test_served_forwarded_for_from_the_trusted_proxy_is_honoured(proxied_server: str) -> None:
    clients = [f"198.51.100.{i}" for i in range(LIMIT + 2)]
    assert 429 not in _live_statuses(proxied_server, "127.0.0.2", clients)
    spoofed = [f"6.6.6.{i}, 198.51.100.222" for i in range(LIMIT + 2)]
    statuses = _live_statuses(proxied_server, "127.0.0.2", spoofed)
    assert statuses[LIMIT:] == [429, 429], statuses
