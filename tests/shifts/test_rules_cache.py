"""The shift gate's rules held in memory, and changed in every API process (app/shifts/cache.py).

Two apps on one database stand for two replicas (as tests/ingest/test_key_cache.py): each runs
its lifespan, so each listens on `hereabouts_device_tokens`, where migration 0039's triggers tell
them a worker's shift window or periods changed. Requests commit for real (a database of its
own). The gate caches the rules, never a decision: fixes are still judged at their own time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.tokens import DeviceTokenCache
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.db import create_engine
from app.rules.windows import Prefs
from app.shifts import service
from app.shifts.cache import PeriodRule, Rules, ShiftRulesCache
from app.shifts.errors import OffShift
from tests.accounts.test_token_cache import _until
from tests.conftest import migrated_database
from tests.factories import Staff, create_organisation, create_staff
from tests.shifts.helpers import fix

Replicas = list[tuple[FastAPI, httpx.AsyncClient]]


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_shift_rules") as u:
        yield u


@pytest.fixture
def replica_settings(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"database_url": url, "rate_limit_enabled": False})


@pytest.fixture
async def worker(replica_settings: Settings) -> AsyncIterator[Staff]:
    engine = create_engine(replica_settings)
    slug = f"shift-town-{uuid.uuid4().hex[:8]}"
    async with AsyncSession(engine, expire_on_commit=False) as s:
        org = await create_organisation(s, slug)
        staff = await create_staff(s, replica_settings, org, Role.field_worker)
        await s.commit()
    yield staff
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM organisations WHERE slug = :s"), {"s": slug})
    await engine.dispose()


@pytest.fixture  # tests ask for `worker` first: its organisation goes after the replicas stop
async def replicas(replica_settings: Settings) -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(2):
            app = create_app_for(replica_settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")
            await stack.enter_async_context(client)
            out.append((app, client))
        for app, _ in out:
            await _until(lambda app=app: app.state.device_tokens.live, 5)
        yield out


def create_app_for(settings: Settings) -> FastAPI:
    from app.main import create_app

    return create_app(settings)


def _forgotten(app: FastAPI, worker: Staff) -> bool:
    return app.state.shift_rules.get(worker.id, datetime.now(UTC)) is None


async def _ping(client: httpx.AsyncClient, worker: Staff, n: int) -> int:
    r = await client.post("/v1/pings", json={"pings": [fix(n, 1)]}, headers=worker.headers)
    assert r.status_code in (202, 409), r.text
    return r.status_code


async def _cache_on(app: FastAPI, client: httpx.AsyncClient, worker: Staff, first: int) -> int:
    """Ping through this replica until it holds the worker's rules; the next fix number. (The
    cache takes an answer only while its heartbeat is fresh, which a loaded machine can miss
    for a moment: then that request asked the database, as designed.)"""
    n = first
    for _ in range(5):
        await _until(lambda: app.state.device_tokens.live, 5)
        assert await _ping(client, worker, n) == 202
        n += 1
        if app.state.shift_rules.get(worker.id, datetime.now(UTC)) is not None:
            return n
    raise AssertionError("the rules were never cached")


async def test_a_workers_rules_are_answered_from_memory_once_seen(
    worker: Staff, replicas: Replicas
) -> None:
    (app, client), _ = replicas
    assert app.state.shift_rules.get(worker.id, datetime.now(UTC)) is None
    n = await _cache_on(app, client, worker, 0)
    # the gate's tables are locked from under the request, which still passes
    engine = create_engine(app.state.settings)
    async with engine.connect() as conn:
        await conn.execute(text("BEGIN"))
        await conn.execute(text("LOCK TABLE staff_periods IN ACCESS EXCLUSIVE MODE"))
        status = await asyncio.wait_for(_ping(client, worker, n), timeout=10)
        await conn.execute(text("ROLLBACK"))
    await engine.dispose()
    assert status == 202


async def test_a_pause_takes_effect_at_once_on_every_replica(
    worker: Staff, replicas: Replicas
) -> None:
    (app_a, a), (app_b, b) = replicas
    n = await _cache_on(app_a, a, worker, 0)  # both replicas hold the worker's rules
    n = await _cache_on(app_b, b, worker, n)

    r = await a.post("/v1/me/tracking/pause", headers=worker.headers)
    assert r.status_code == 201, r.text
    # the replica that paused refuses the next fix without waiting for any notification
    assert await _ping(a, worker, n) == 409
    # the other drops the rules as soon as the notice arrives, then refuses too
    took = await _until(lambda: _forgotten(app_b, worker), 1)
    assert took < 1.0
    assert await _ping(b, worker, n + 1) == 409
    n = await _cache_on_refused(app_b, b, worker, n + 2)  # cached again: still refused

    r = await b.post("/v1/me/tracking/resume", headers=worker.headers)
    assert r.status_code == 200, r.text
    assert await _ping(b, worker, n) == 202
    await _until(lambda: _forgotten(app_a, worker), 1)
    assert await _ping(a, worker, n + 1) == 202


async def test_the_replica_that_paused_refuses_the_next_fix_before_any_notice(
    worker: Staff, replicas: Replicas
) -> None:
    """The worker's own replica drops their rules at its commit, not when the notice comes."""
    (app_a, a), _ = replicas
    n = await _cache_on(app_a, a, worker, 0)
    cache: ShiftRulesCache = app_a.state.shift_rules
    followers = app_a.state.device_tokens._followers
    followers.remove(cache.on_notify)  # notices reach this cache late: here, never
    try:
        r = await a.post("/v1/me/tracking/pause", headers=worker.headers)
        assert r.status_code == 201, r.text
        assert await _ping(a, worker, n) == 409
    finally:
        followers.append(cache.on_notify)


async def _cache_on_refused(
    app: FastAPI, client: httpx.AsyncClient, worker: Staff, first: int
) -> int:
    n = first
    for _ in range(5):
        await _until(lambda: app.state.device_tokens.live, 5)
        assert await _ping(client, worker, n) == 409
        n += 1
        if app.state.shift_rules.get(worker.id, datetime.now(UTC)) is not None:
            return n
    raise AssertionError("the rules were never cached")


async def test_a_shift_window_set_on_one_replica_applies_on_the_other(
    worker: Staff, replicas: Replicas
) -> None:
    (app_a, a), (app_b, b) = replicas
    n = await _cache_on(app_b, b, worker, 0)  # no window: always on shift
    now = datetime.now(UTC)
    body = {
        "start": f"{now + timedelta(hours=2):%H:%M}",
        "end": f"{now + timedelta(hours=3):%H:%M}",
        "time_zone": "UTC",
    }
    r = await a.put(f"/v1/staff/{worker.id}/shift", json=body, headers=worker.headers)
    assert r.status_code == 200, r.text
    await _until(lambda: _forgotten(app_b, worker), 1)
    assert await _ping(b, worker, n) == 409


def _live_cache() -> ShiftRulesCache:
    tokens = DeviceTokenCache()
    tokens._listening, tokens._beat = True, 1e18  # a healthy listener, for these tests
    return ShiftRulesCache(tokens)


async def test_the_rules_are_cached_not_the_decision(db: AsyncSession, settings: Settings) -> None:
    """A window that closes and an ad-hoc shift that reaches its length need no notification:
    each fix is judged at its own time by the cached rules."""
    org = await create_organisation(db)
    worker = await create_staff(db, settings, org, Role.field_worker)
    await db.execute(
        text(
            "INSERT INTO notification_preferences (id, organisation_id, staff_user_id, time_zone,"
            " shift_start, shift_end) VALUES (gen_random_uuid(), :o, :s, 'UTC', '09:00', '17:00')"
        ),
        {"o": org.id, "s": worker.id},
    )
    cache = _live_cache()
    noon = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert await service.check_times(db, settings, worker.id, [noon], now=noon, cache=cache) == [
        True
    ]
    assert cache.get(worker.id, noon) is not None  # loaded once, and kept
    # the database now says nothing at all: what follows comes from the cache alone
    await db.execute(text("DELETE FROM notification_preferences WHERE staff_user_id = :s"),
                     {"s": worker.id})  # fmt: skip
    evening = noon.replace(hour=18)
    with pytest.raises(OffShift):
        await service.check_times(db, settings, worker.id, [evening], now=evening, cache=cache)
    # a batch sent at 16:59 with fixes from 8:30 and 16:30: judged one by one
    late = noon.replace(hour=16, minute=59)
    times = [noon.replace(hour=8, minute=30), noon.replace(hour=16, minute=30)]
    assert await service.check_times(db, settings, worker.id, times, now=late, cache=cache) == [
        False,
        True,
    ]
    # a fix older than what the entry holds asks the database (no window there any more)
    old = noon - timedelta(days=2)
    assert cache.get(worker.id, old) is None
    assert await service.check_times(db, settings, worker.id, [old], now=noon, cache=cache) == [
        True
    ]


async def test_an_adhoc_shift_ends_by_itself_in_the_cache(
    db: AsyncSession, settings: Settings
) -> None:
    cache = _live_cache()
    worker_id = uuid.uuid4()
    start = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    # a window that never covers the evening: only the ad-hoc shift does
    window = Prefs("UTC", None, None, frozenset(), None, shift_start=start.time().replace(hour=9),
                   shift_end=start.time().replace(hour=10))  # fmt: skip
    shift = PeriodRule("shift", start, start + timedelta(hours=2), None)
    cache.put(worker_id, Rules(window, (shift,), start - timedelta(days=1)), cache.generation)
    inside = start + timedelta(hours=1)
    ok = await service.check_times(db, settings, worker_id, [inside], now=inside, cache=cache)
    assert ok == [True]
    after = start + timedelta(hours=2, minutes=1)
    with pytest.raises(OffShift):
        await service.check_times(db, settings, worker_id, [after], now=after, cache=cache)


def test_a_lookup_racing_a_change_does_not_put_the_old_rules_back() -> None:
    cache = _live_cache()
    tokens = cache._tokens
    worker_id = uuid.uuid4()
    rules = Rules(Prefs("UTC", None, None, frozenset(), None), (), datetime.now(UTC))
    before = cache.generation  # a lookup starts
    tokens._on_notify(None, 0, "", f"staff:{worker_id}")  # a change arrives meanwhile
    cache.put(worker_id, rules, before)  # the lookup's answer comes back
    assert cache.get(worker_id, datetime.now(UTC)) is None
    cache.put(worker_id, rules, cache.generation)
    assert cache.get(worker_id, datetime.now(UTC)) == rules
    tokens._on_notify(None, 0, "", "ab" * 32)  # a device token's hash: not about this worker
    assert cache.get(worker_id, datetime.now(UTC)) == rules
    tokens._on_notify(None, 0, "", f"staff:{uuid.uuid4()}")  # another worker
    assert cache.get(worker_id, datetime.now(UTC)) == rules
    tokens._stop_listening()  # the listener is lost: forget all, answer nothing
    assert cache.get(worker_id, datetime.now(UTC)) is None
