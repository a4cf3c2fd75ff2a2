"""Ingest keys answered from memory, and revoked in every API process (app/ingest/keycache.py).

Two apps on one database stand for two replicas (as tests/accounts/test_token_cache.py): each
runs its lifespan, so each listens on `hereabouts_device_tokens`, where migration 0035's trigger
tells them of a deleted key. Requests commit for real (a fresh database of its own).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.tokens import DeviceTokenCache
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.db import create_engine
from app.core.security import hash_token
from app.ingest.keycache import IngestKeyCache
from app.main import create_app
from app.presence.models import SubjectKind
from app.presence.service import Subject
from tests.accounts.test_token_cache import _until
from tests.conftest import migrated_database
from tests.factories import create_organisation
from tests.ingest.helpers import traccar_params
from tests.ingest.helpers import walk as a_walk

Replicas = list[tuple[FastAPI, httpx.AsyncClient]]


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_ingest_keys") as u:
        yield u


@pytest.fixture
async def replicas(settings: Settings, url: str) -> AsyncIterator[Replicas]:
    replica_settings = settings.model_copy(
        update={"database_url": url, "rate_limit_enabled": False}
    )
    engine = create_engine(replica_settings)
    async with AsyncSession(engine) as s:
        await create_organisation(s, "key-town")
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
        await conn.execute(text("DELETE FROM organisations WHERE slug = 'key-town'"))
    await engine.dispose()


async def _device_with_key(client: httpx.AsyncClient) -> tuple[dict[str, str], str, str]:
    """A device with background location on, and an ingest key of its own."""
    r = await client.post("/v1/devices", json={"organisation": "key-town"})
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.put("/v1/me/background-location", json={"enabled": True}, headers=auth)
    assert r.status_code == 200, r.text
    r = await client.post("/v1/me/ingest-keys", json={"app": "traccar"}, headers=auth)
    assert r.status_code == 201, r.text
    return auth, str(r.json()["id"]), str(r.json()["key"])


async def _send(client: httpx.AsyncClient, key: str, n: int = 0) -> int:
    fix = a_walk(n + 1)[n]
    r = await client.get("/v1/ingest/traccar", params=traccar_params(key, fix))
    return r.status_code


async def _cache_on(app: FastAPI, client: httpx.AsyncClient, key: str, first: int) -> int:
    """Send fixes through this replica until it holds the key in memory; the next fix number.

    The cache takes an answer only while its listener's heartbeat is fresh (2 s), which a
    loaded test machine can miss for a moment: then the request asks the database, as designed,
    and the next one is cached."""
    n = first
    for _ in range(5):
        await _until(lambda: app.state.device_tokens.live, 5)
        assert await _send(client, key, n) == 200
        n += 1
        if app.state.ingest_keys.get(hash_token(key)) is not None:
            return n
    raise AssertionError("the key was never cached")


async def test_a_key_is_answered_from_memory_once_seen(replicas: Replicas) -> None:
    (app, client), _ = replicas
    cache: IngestKeyCache = app.state.ingest_keys
    _, _, key = await _device_with_key(client)
    assert cache.get(hash_token(key)) is None
    n = await _cache_on(app, client, key, 0)
    # answered without the table: it is locked from under the request, which still passes
    engine = create_engine(app.state.settings)
    async with engine.connect() as conn:
        await conn.execute(text("BEGIN"))
        await conn.execute(text("LOCK TABLE ingest_keys IN ACCESS EXCLUSIVE MODE"))
        status = await asyncio.wait_for(_send(client, key, n), timeout=10)
        await conn.execute(text("ROLLBACK"))
    await engine.dispose()
    assert status == 200


async def test_a_key_revoked_on_one_replica_is_refused_by_the_other_at_once(
    replicas: Replicas,
) -> None:
    (app_a, a), (app_b, b) = replicas
    auth, key_id, key = await _device_with_key(a)
    n = await _cache_on(app_a, a, key, 0)  # both replicas now answer this key from memory
    n = await _cache_on(app_b, b, key, n)

    assert (await a.delete(f"/v1/me/ingest-keys/{key_id}", headers=auth)).status_code == 204
    # the replica that revoked it refuses it at once; the other as soon as the notice arrives
    assert await _send(a, key, n) == 401
    took = await _until(lambda: app_b.state.ingest_keys.get(hash_token(key)) is None, 1.0)
    assert took < 1.0
    assert await _send(b, key, n + 1) == 401


async def test_an_erased_device_takes_its_keys_with_it_everywhere(replicas: Replicas) -> None:
    (_, a), (app_b, b) = replicas
    auth, _, key = await _device_with_key(a)
    n = await _cache_on(app_b, b, key, 0)
    assert (await a.delete("/v1/me", headers=auth)).status_code == 204  # erasure: keys cascade
    await _until(lambda: app_b.state.ingest_keys.get(hash_token(key)) is None, 1.0)
    assert await _send(b, key, n) == 401


async def test_a_lookup_racing_a_revocation_does_not_put_the_old_answer_back() -> None:
    tokens = DeviceTokenCache()
    tokens._listening, tokens._beat = True, 1e18  # a healthy listener, for this unit test
    cache = IngestKeyCache(tokens)
    who = Subject(SubjectKind.device, uuid.uuid4(), uuid.uuid4())
    before = cache.generation  # a lookup starts
    tokens.invalidate("ab" * 32)  # a revocation arrives meanwhile (any key)
    cache.put("ab" * 32, who, before)  # the lookup's answer comes back
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, who, cache.generation)
    assert cache.get("ab" * 32) == who
    tokens._stop_listening()  # the listener is lost: forget all, answer nothing
    assert cache.get("ab" * 32) is None
