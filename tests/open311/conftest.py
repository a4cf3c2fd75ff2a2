"""End-to-end Open311 fixtures: a committed database of its own, the real app served over HTTP
on a loopback port (Open311 client libraries are synchronous `requests` code, so they need a real
socket), the fake push service and delivery workers (as in tests/rules)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.main import create_app
from tests.conftest import APP_CONNECT_ARGS, empty_tables, migrated_database
from tests.notifications.conftest import (  # noqa: F401 - fixtures reused
    fake_push,
    push_settings,
    signer,
    vapid_pem,
)
from tests.open311.helpers import Council


@pytest.fixture(scope="session")
def open311_database_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_open311") as url:
        yield url


@pytest.fixture(scope="session")
async def open311_engine_session(open311_database_url: str) -> AsyncIterator[AsyncEngine]:
    # the app's connect settings, as the rules and push fixtures' engines: without them a new
    # connection's type introspection takes seconds on Citus, and a delivery settled after the
    # tests' 2 s push lease was claimed and sent again (the same push 2-4 times)
    engine = create_async_engine(
        open311_database_url, pool_size=10, max_overflow=10, connect_args=APP_CONNECT_ARGS
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def open311_engine(open311_engine_session: AsyncEngine) -> AsyncEngine:
    """Emptied before each test (organisations cascade to everything they own)."""
    async with open311_engine_session.begin() as conn:
        await empty_tables(
            conn,
            "push_deliveries",
            "outbox",
            "notifications",
            "push_subscriptions",
            "notification_decisions",
            "pings",
            "organisations",
        )
    return open311_engine_session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def base_url(
    push_settings: Settings,  # noqa: F811
    open311_engine: AsyncEngine,
) -> AsyncIterator[str]:
    """The real app on a loopback port, in this test's event loop."""
    application = create_app(push_settings, engine=open311_engine)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def council(
    base_url: str,
    push_settings: Settings,  # noqa: F811
    open311_engine: AsyncEngine,
) -> AsyncIterator[Council]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
        yield await Council(open311_engine, push_settings, api, base_url).setup()
