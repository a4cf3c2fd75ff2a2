"""`commit_retrying`: a transaction run again after a deadlock or serialization failure only.

The errors are PostgreSQL's own, raised by the server (`RAISE ... USING ERRCODE`), through both
ways the app talks to it: SQLAlchemy and the hot paths' asyncpg connection. The deadlock the
ping groups meet for real is in tests/presence/test_concurrency.py.
"""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import CONFLICT_ATTEMPTS, commit_retrying, conflict_sqlstate, driver_connection


def _raise(sqlstate: str, message: str = "test") -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}'; END $$"


def _retries(what: str, sqlstate: str) -> float:
    labels = {"what": what, "sqlstate": sqlstate}
    return REGISTRY.get_sample_value("hereabouts_db_transaction_retries_total", labels) or 0.0


async def _marks(engine: AsyncEngine, tag: str) -> int:
    """Marker rows (organisations) that this test's transactions committed."""
    async with engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM organisations WHERE slug LIKE :t"), {"t": f"{tag}%"}
        )
        return int(n or 0)


async def _mark(session: AsyncSession, tag: str, n: int) -> None:
    await session.execute(
        text("INSERT INTO organisations (id, slug, name) VALUES (:id, :slug, 'retry test')"),
        {"id": uuid.uuid4(), "slug": f"{tag}-{n}"},
    )


async def _cleanup(engine: AsyncEngine, tag: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM organisations WHERE slug LIKE :t"), {"t": f"{tag}%"})


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_conflict_is_run_again_and_only_the_last_run_commits(
    engine: AsyncEngine, sqlstate: str
) -> None:
    tag = f"retry-{uuid.uuid4().hex[:8]}"
    runs = 0
    before = _retries("test", sqlstate)

    async def work() -> str:
        nonlocal runs
        runs += 1
        await _mark(session, tag, runs)  # undone by each failed run's rollback
        if runs < 3:
            await session.execute(text(_raise(sqlstate)))
        return "done"

    try:
        async with AsyncSession(engine) as session:
            assert await commit_retrying(session, work, what="test") == "done"
        assert runs == 3
        assert _retries("test", sqlstate) == before + 2
        assert await _marks(engine, tag) == 1  # the third run's row, committed
    finally:
        await _cleanup(engine, tag)


async def test_conflicts_on_the_driver_connection_are_retried_too(engine: AsyncEngine) -> None:
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        driver = await driver_connection(session)
        if runs == 1:
            await driver.execute(_raise("40P01"))
        return int(await driver.fetchval("SELECT 7"))

    async with AsyncSession(engine) as session:
        assert await commit_retrying(session, work, what="test") == 7
    assert runs == 2


async def test_the_attempts_are_bounded_and_the_last_conflict_is_raised(
    engine: AsyncEngine,
) -> None:
    tag = f"retry-{uuid.uuid4().hex[:8]}"
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        await _mark(session, tag, runs)
        await session.execute(text(_raise("40001")))

    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(sa_exc.DBAPIError) as caught:
                await commit_retrying(session, work, what="test")
            assert not session.in_transaction()
        assert conflict_sqlstate(caught.value) == "40001"
        assert runs == CONFLICT_ATTEMPTS
        assert await _marks(engine, tag) == 0
    finally:
        await _cleanup(engine, tag)


@pytest.mark.parametrize("sqlstate", ["23505", "22012", "55P03"])
async def test_other_errors_are_not_run_again(engine: AsyncEngine, sqlstate: str) -> None:
    tag = f"retry-{uuid.uuid4().hex[:8]}"
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        await _mark(session, tag, runs)
        await session.execute(text(_raise(sqlstate)))

    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(sa_exc.DBAPIError) as caught:
                await commit_retrying(session, work, what="test")
        assert conflict_sqlstate(caught.value) is None
        assert runs == 1
        assert await _marks(engine, tag) == 0
    finally:
        await _cleanup(engine, tag)


async def test_a_citus_workers_deadlock_passed_on_as_an_internal_error_is_run_again(
    engine: AsyncEngine,
) -> None:
    """Citus hands a worker node's deadlock to the client as XX000 "deadlock detected" (seen
    while draining a worker under ping batches); any other internal error is not run again."""
    runs = 0
    before = _retries("test", "XX000")

    async def work() -> int:
        nonlocal runs
        runs += 1
        driver = await driver_connection(session)
        if runs == 1:
            await driver.execute(_raise("XX000", "deadlock detected"))
        return int(await driver.fetchval("SELECT 7"))

    async with AsyncSession(engine) as session:
        assert await commit_retrying(session, work, what="test") == 7
    assert runs == 2
    assert _retries("test", "XX000") == before + 1

    async def other() -> None:
        await session.execute(text(_raise("XX000", "cache lookup failed")))

    async with AsyncSession(engine) as session:
        with pytest.raises(sa_exc.DBAPIError) as caught:
            await commit_retrying(session, other, what="test")
    assert conflict_sqlstate(caught.value) is None
