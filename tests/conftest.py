"""Test fixtures: a real PostgreSQL + PostGIS started by the test run itself.

The same cluster manager as the embedded default provisions a throwaway cluster under
`.data/test-pg` (as an unprivileged user when run as root), a fresh database per run is migrated
once, and every test runs inside a transaction that is rolled back at the end. With
`HEREABOUTS_TEST_CITUS=1` (`make test-citus`) the cluster is a Citus coordinator and two workers
under `.data/test-citus*`, and the same tests run on it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.core import security
from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT, Environment, Settings
from app.core.db import get_session
from app.main import create_app

TEST_PORT = int(os.environ.get("HEREABOUTS_TEST_PG_PORT", "54339"))
# `make test-citus`: the same tests on a Citus coordinator + two workers (app/core/citus.py)
ON_CITUS = os.environ.get("HEREABOUTS_TEST_CITUS", "") == "1"
CITUS_PORTS = [
    int(p) for p in os.environ.get("HEREABOUTS_TEST_CITUS_PORTS", "54351,54352,54353").split(",")
]


def _test_cluster() -> EmbeddedCluster:
    if ON_CITUS:
        from app.core.citus import CitusCluster

        return CitusCluster(
            data_dir=PROJECT_ROOT / ".data" / "test-citus",
            port=CITUS_PORTS[0],
            worker_ports=tuple(CITUS_PORTS[1:]),
        )
    return EmbeddedCluster(data_dir=PROJECT_ROOT / ".data" / "test-pg", port=TEST_PORT)


class _HashOncePerPassword(PasswordHasher):
    """The app's argon2id hasher, with its parameters, that hashes each password once per run.

    Hashing is slow on purpose (about 0.2 s of CPU, twice that on a busy 2-core machine) and
    hundreds of test users share a handful of passwords. A repeated password gets the hash
    already made for it: still a real argon2id hash with the production parameters, verified
    at every login as in production; only the salt is shared between those test users (as
    tests/offers/helpers.quick_staff always did)."""

    def __init__(self, real: PasswordHasher) -> None:
        super().__init__(
            time_cost=real.time_cost,
            memory_cost=real.memory_cost,
            parallelism=real.parallelism,
            hash_len=real.hash_len,
            salt_len=real.salt_len,
            type=real.type,
        )
        self._made: dict[str | bytes, str] = {}

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        if salt is not None:
            return super().hash(password, salt=salt)
        if password not in self._made:
            self._made[password] = super().hash(password)
        return self._made[password]


@pytest.fixture(scope="session", autouse=True)
def _hash_each_password_once() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", _HashOncePerPassword(security._hasher))
        yield


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    cluster = _test_cluster()
    was_running = cluster.is_running()
    cluster.ensure_running()
    yield cluster
    if _TEMPLATE_MADE:
        cluster.drop_database(TEMPLATE_DATABASE)
    if not was_running:
        cluster.stop()


def _upgrade_to_head(url: str) -> None:
    from alembic import command

    from app.core.ops import alembic_config

    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


# Every fresh database of a run (the suite's own, the per-module ones, each live server's) is a
# copy of one database migrated to head once per run: `CREATE DATABASE … TEMPLATE` copies its
# files in a fraction of a second, where running every migration again takes seconds each time.
# Nothing connects to the template after its migration (a copy needs it idle). The migrations
# themselves are still run here, once per run, and up and down in tests/core/test_migrations.py.
# On Citus every database is created on each node with its extensions instead (app/core/citus.py).
TEMPLATE_DATABASE = f"hereabouts_template_{os.getpid()}"
_TEMPLATE_MADE: list[bool] = []


def fresh_database(pg_cluster: EmbeddedCluster, name: str, *, migrated: bool = True) -> str:
    """(Re)create database `name` on the test cluster, migrated to head unless told not to;
    its URL. The caller drops it."""
    pg_cluster.drop_database(name)
    if not migrated or ON_CITUS:
        pg_cluster.ensure_database(name)
        if migrated:
            _upgrade_to_head(pg_cluster.url(name))
        return pg_cluster.url(name)
    if not _TEMPLATE_MADE:
        pg_cluster.drop_database(TEMPLATE_DATABASE)
        pg_cluster.ensure_database(TEMPLATE_DATABASE)
        _upgrade_to_head(pg_cluster.url(TEMPLATE_DATABASE))
        _TEMPLATE_MADE.append(True)
    pg_cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DATABASE}"')
    return pg_cluster.url(name)


@contextmanager
def migrated_database(pg_cluster: EmbeddedCluster, prefix: str) -> Iterator[str]:
    """A fresh database on the test cluster, migrated to head, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}"
    url = fresh_database(pg_cluster, name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)


# the tables a TRUNCATE ... CASCADE of the given ones empties: them and, transitively, every
# table with a foreign key to one of them, each with the tables it references among them
_CASCADE_SQL = """
WITH RECURSIVE reach(rel) AS (
    SELECT unnest(CAST(:tables AS regclass[]))
    UNION
    SELECT c.conrelid FROM pg_constraint c JOIN reach r ON c.confrelid = r.rel
    JOIN pg_class k ON k.oid = c.conrelid
    WHERE c.contype = 'f' AND NOT k.relispartition  -- a partition is emptied with its parent
)
SELECT r.rel::text,
       array_remove(array_agg(DISTINCT c.confrelid::regclass::text), NULL) AS parents
FROM reach r
LEFT JOIN pg_constraint c
  ON c.conrelid = r.rel AND c.contype = 'f' AND c.confrelid <> r.rel
 AND c.confrelid IN (SELECT rel FROM reach)
GROUP BY r.rel
"""


async def empty_tables(conn: AsyncConnection, *tables: str) -> None:
    """Empty `tables` as `TRUNCATE ... CASCADE` would: them and every table that references one.

    On Citus that TRUNCATE takes 12-23 s on the test cluster (an exclusive lock and a truncate on
    every shard and copy of every table that belongs to an organisation, in a two-phase commit),
    and a test database's few rows are gone in a fraction of a second with DELETE instead: every
    table of the same set, referencing tables before the tables they reference.
    """
    if not ON_CITUS:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        return
    rows = (await conn.execute(text(_CASCADE_SQL), {"tables": list(tables)})).all()
    parents = {rel: set(ps) for rel, ps in rows}
    done: set[str] = set()

    async def delete(rel: str, path: frozenset[str]) -> None:
        if rel in done:
            return
        for child in sorted(c for c, ps in parents.items() if rel in ps and c not in path):
            await delete(child, path | {rel})
        done.add(rel)
        await conn.execute(text(f"DELETE FROM {rel}"))

    for rel in sorted(parents):
        await delete(rel, frozenset())


@pytest.fixture(scope="session")
def database_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_test") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        environment=Environment.test,
        database_url=database_url,
        log_json=False,
        log_level="WARNING",
        jwt_secret="test-secret-" + "x" * 32,
        push_allow_loopback=True,
        run_worker_in_process=False,
    )


# What the app's own engines set at connect time (app.core.db.create_engine) that matters on Citus:
# shard placements visible in pg_class, so asyncpg's type introspection takes milliseconds, not
# seconds (docs/scaling.md). The tests' engines stand for the app's; a test that lists tables on
# Citus leaves the placements out itself (tests/core/test_citus.py).
APP_CONNECT_ARGS: dict[str, Any] = {"server_settings": {"citus.override_table_visibility": "off"}}


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(
        str(settings.database_url), poolclass=NullPool, connect_args=APP_CONNECT_ARGS
    )
    yield eng
    await eng.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        trans = await conn.begin()
        yield conn
        if trans.is_active:
            await trans.rollback()


@pytest.fixture
async def db(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session joined to the test's outer transaction: commits become savepoints."""
    session = AsyncSession(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    yield session
    await session.close()


@pytest.fixture
def app(settings: Settings, engine: AsyncEngine, db: AsyncSession) -> FastAPI:
    application = create_app(settings, engine=engine)

    async def session_override() -> AsyncIterator[AsyncSession]:
        # Setup rows written by factories count as committed before the request starts, so a
        # request that fails rolls back only its own work (as it would against a real server).
        await db.commit()
        try:
            yield db
        except BaseException:
            await db.rollback()
            raise
        else:
            await db.commit()

    application.dependency_overrides[get_session] = session_override
    return application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if not items:
        raise pytest.UsageError("no tests collected: refusing to pass silently")


def run(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)
