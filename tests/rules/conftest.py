"""End-to-end fixtures for notification rules: a committed database of their own, the real app
on it, the fake push service and delivery workers (as in tests/notifications)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
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


@pytest.fixture(scope="session")
def rules_database_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_rules") as url:
        yield url


@pytest.fixture(scope="session")
async def rules_engine_session(rules_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        rules_database_url, pool_size=10, max_overflow=10, connect_args=APP_CONNECT_ARGS
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def rules_engine(rules_engine_session: AsyncEngine) -> AsyncEngine:
    """Emptied before each test (organisations cascade to everything they own)."""
    async with rules_engine_session.begin() as conn:
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
    return rules_engine_session


@pytest.fixture
def rules_settings(push_settings: Settings) -> Settings:  # noqa: F811
    return push_settings


@pytest.fixture
async def api(
    rules_settings: Settings, rules_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(rules_settings, engine=rules_engine)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
