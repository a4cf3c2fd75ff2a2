"""Device tokens answered from memory, and revoked in every API process (app/accounts/tokens.py).

Two apps on one database stand for two replicas: each runs its lifespan, so each listens on
`hereabouts_device_tokens`. Requests commit for real (a fresh database of its own).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.accounts.tokens import DeviceTokenCache
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.db import create_engine
from app.core.listen import listen_dsn
from app.core.security import hash_token
from app.main import create_app
from tests.conftest import migrated_database
from tests.factories import DEFAULT_PASSWORD, create_organisation, create_staff


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_tokens") as u:
        yield u


@pytest.fixture
def replica_settings(settings: Settings, url: str) -> Settings:
    """The suite's settings, on this module's database."""
    return settings.model_copy(update={"database_url": url, "rate_limit_enabled": False})


async def _until(check: object, seconds: float) -> float:
    """Poll `check()` until true; the seconds it took (fails after `seconds`)."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < seconds, "not within the time allowed"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
async def replicas(
    replica_settings: Settings,
) -> AsyncIterator[list[tuple[FastAPI, httpx.AsyncClient]]]:
    engine = create_engine(replica_settings)
    async with AsyncSession(engine) as s:
        await create_organisation(s, "token-town")
        await s.commit()
    await engine.dispose()
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(2):
            app = create_app(replica_settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")
            await stack.enter_async_context(client)
            out.append((app, client))
        for app, _ in out:
            await _until(lambda app=app: app.state.device_tokens.live, 5)
        yield out
    engine = create_engine(replica_settings)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM organisations WHERE slug = 'token-town'"))
    await engine.dispose()


async def _device(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/devices", json={"organisation": "token-town"})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def test_a_token_is_answered_from_memory_once_seen(
    replicas: list[tuple[FastAPI, httpx.AsyncClient]],
) -> None:
    (app, client), _ = replicas
    cache: DeviceTokenCache = app.state.device_tokens
    token = await _device(client)
    auth = {"Authorization": f"Bearer {token}"}
    assert cache.get(hash_token(token)) is None
    assert (await client.get("/v1/me/background-location", headers=auth)).status_code == 200
    assert cache.get(hash_token(token)) is not None
    # answered without the database: the table is gone from under it, the request still passes
    # its authentication (and fails later, where it reads the table)
    engine = create_engine(app.state.settings)
    async with engine.connect() as conn:
        await conn.execute(text("BEGIN"))
        await conn.execute(text("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE"))
        r = await asyncio.wait_for(
            client.get("/v1/me/background-location", headers=auth), timeout=10
        )
        await conn.execute(text("ROLLBACK"))
    await engine.dispose()
    assert r.status_code == 200, r.text


async def test_an_erased_device_is_refused_by_every_replica_within_a_second(
    replicas: list[tuple[FastAPI, httpx.AsyncClient]],
) -> None:
    (app_a, a), (app_b, b) = replicas
    token = await _device(a)
    auth = {"Authorization": f"Bearer {token}"}
    for client in (a, b):  # both replicas now answer this token from memory
        assert (await client.get("/v1/me/background-location", headers=auth)).status_code == 200
    assert app_b.state.device_tokens.get(hash_token(token)) is not None

    assert (await a.delete("/v1/me", headers=auth)).status_code == 204
    # the replica that erased it refuses it at once; the other as soon as the notice arrives
    assert (await a.get("/v1/me/background-location", headers=auth)).status_code == 401
    took = await _until(lambda: app_b.state.device_tokens.get(hash_token(token)) is None, 1.0)
    assert took < 1.0
    assert (await b.get("/v1/me/background-location", headers=auth)).status_code == 401


async def test_an_organisation_removed_revokes_its_devices_tokens(
    replicas: list[tuple[FastAPI, httpx.AsyncClient]],
) -> None:
    (app_a, a), _ = replicas
    token = await _device(a)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await a.get("/v1/me/background-location", headers=auth)).status_code == 200
    engine = create_engine(app_a.state.settings)
    async with engine.begin() as conn:  # straight in SQL: ON DELETE CASCADE removes the device
        await conn.execute(text("DELETE FROM organisations WHERE slug = 'token-town'"))
    await engine.dispose()
    await _until(lambda: app_a.state.device_tokens.get(hash_token(token)) is None, 1.0)
    assert (await a.get("/v1/me/background-location", headers=auth)).status_code == 401


async def test_truncating_devices_forgets_every_token(
    replicas: list[tuple[FastAPI, httpx.AsyncClient]],
) -> None:
    (app_a, a), _ = replicas
    cache: DeviceTokenCache = app_a.state.device_tokens
    tokens = [await _device(a) for _ in range(3)]
    for token in tokens:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await a.get("/v1/me/background-location", headers=headers)).status_code == 200
    assert all(cache.get(hash_token(t)) is not None for t in tokens)
    engine = create_engine(app_a.state.settings)
    async with engine.begin() as conn:  # statement-level: no row trigger fires
        await conn.execute(text("TRUNCATE devices CASCADE"))
    await engine.dispose()
    await _until(lambda: all(cache.get(hash_token(t)) is None for t in tokens), 1.0)


async def test_a_lookup_racing_a_revocation_does_not_put_the_old_answer_back() -> None:
    cache = DeviceTokenCache()
    cache._listening = True  # as if listening, with a fresh heartbeat
    cache._beat = time.monotonic()
    generation = cache.generation  # a request starts asking the database ...
    cache._on_notify(None, 0, "hereabouts_device_tokens", "h")  # ... the token is revoked ...
    cache.put("h", (uuid.uuid4(), uuid.uuid4()), generation)  # ... the old answer comes back
    assert cache.get("h") is None


async def test_without_a_healthy_listener_every_lookup_goes_to_the_database() -> None:
    cache = DeviceTokenCache(heartbeat_s=0.05)
    ident = (uuid.uuid4(), uuid.uuid4())
    cache.put("h", ident, cache.generation)
    assert cache.get("h") is None  # never listened: nothing kept, nothing answered
    cache._listening = True
    cache._beat = time.monotonic()
    cache.put("h", ident, cache.generation)
    assert cache.get("h") == ident
    await asyncio.sleep(0.12)  # no heartbeat answered for 2 x heartbeat_s
    assert cache.get("h") is None
    cache._stop_listening()  # the connection lost: everything forgotten
    cache._beat = time.monotonic()
    assert cache.get("h") is None


async def test_a_listener_whose_notifications_do_not_arrive_never_answers(
    replica_settings: Settings,
) -> None:
    """As through a pooler that drops LISTEN: connected and answering queries, but deaf."""
    engine = create_engine(replica_settings)
    dsn = listen_dsn(engine)
    await engine.dispose()
    working, deaf = DeviceTokenCache(heartbeat_s=0.3), DeviceTokenCache(heartbeat_s=0.3)
    deaf._on_notify = lambda *_args: None  # type: ignore[method-assign]
    tasks = [asyncio.create_task(c.run(dsn)) for c in (working, deaf)]
    try:
        await _until(lambda: working.live, 5)
        await _until(lambda: deaf._listening, 5)  # its connection is up ...
        for _ in range(30):  # ... but over five heartbeats it never hears its own
            assert not deaf.live
            await asyncio.sleep(0.05)
        await _until(lambda: working.live, 5)  # while the working one kept hearing its own
        deaf.put("h", (uuid.uuid4(), uuid.uuid4()), deaf.generation)
        assert deaf.get("h") is None
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_staff_members_sessions_end_on_every_replica_at_their_next_request(
    replicas: list[tuple[FastAPI, httpx.AsyncClient]], replica_settings: Settings
) -> None:
    """Staff tokens are checked against the account row on every request (no cache to tell):
    a role change or an erasure on one replica is refused by the other at once, no waiting."""
    (_, a), (_, b) = replicas
    engine = create_engine(replica_settings)
    async with AsyncSession(engine) as s:
        org = (
            await s.execute(select(Organisation).where(Organisation.slug == "token-town"))
        ).scalar_one()
        admin = await create_staff(s, replica_settings, org, Role.admin)
        worker = await create_staff(s, replica_settings, org, Role.field_worker)
        await s.commit()
    await engine.dispose()
    assert (await b.get("/v1/me", headers=worker.headers)).status_code == 200
    changed = await a.patch(
        f"/v1/users/{worker.id}", json={"role": "editor"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert (await b.get("/v1/me", headers=worker.headers)).status_code == 401
    login = await b.post(
        "/v1/auth/token", data={"username": worker.email, "password": DEFAULT_PASSWORD}
    )
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await a.get("/v1/me", headers=fresh)).json()["role"] == "editor"
    erased = await b.post(f"/v1/users/{worker.id}/erase", headers=admin.headers)
    assert erased.status_code == 200, erased.text
    assert (await a.get("/v1/me", headers=fresh)).status_code == 401
