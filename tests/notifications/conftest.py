"""Fixtures for push tests: a VAPID key, push settings, fake push services and a worker database.

Worker tests need rows committed across connections (workers claim with their own sessions), so
they get a database of their own (`push_engine`), emptied before each test; the rolled-back
`db` fixture used elsewhere is untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.notifications.vapid import VapidSigner, generate_private_key, private_key_pem
from tests.conftest import APP_CONNECT_ARGS, empty_tables, migrated_database
from tests.notifications.fake_push import FakePushService

PUSH_TABLES = ("push_deliveries", "outbox", "notifications", "push_subscriptions")


@pytest.fixture(scope="session")
def vapid_pem() -> str:
    return private_key_pem(generate_private_key()).decode()


@pytest.fixture(scope="session")
def push_settings(settings: Settings, vapid_pem: str) -> Settings:
    return settings.model_copy(
        update={
            "vapid_private_key": vapid_pem,
            "vapid_subject": "mailto:push-tests@council.example",
            "push_allow_loopback": True,
            "push_poll_interval_s": 0.2,
            "push_lease_s": 2.0,
            "push_backoff_base_s": 0.05,
            "push_backoff_cap_s": 0.2,
            "push_timeout_s": 30.0,
            "push_max_attempts": 4,
        }
    )


@pytest.fixture(scope="session")
def signer(push_settings: Settings) -> VapidSigner:
    return VapidSigner.from_settings(push_settings)


@pytest.fixture
async def fake_push(signer: VapidSigner) -> AsyncIterator[FakePushService]:
    service = await FakePushService(vapid_public_key=signer.public_key).start()
    yield service
    await service.stop()


@pytest.fixture
async def other_fake_push(signer: VapidSigner) -> AsyncIterator[FakePushService]:
    service = await FakePushService(vapid_public_key=signer.public_key).start()
    yield service
    await service.stop()


@pytest.fixture(scope="session")
def push_database_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_push") as url:
        yield url


@pytest.fixture(scope="session")
async def push_engine_session(push_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        push_database_url, pool_size=10, max_overflow=10, connect_args=APP_CONNECT_ARGS
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def push_engine(push_engine_session: AsyncEngine) -> AsyncEngine:
    """The worker database, emptied of push data (and organisations) before the test."""
    async with push_engine_session.begin() as conn:
        await empty_tables(conn, *PUSH_TABLES, "organisations")
    return push_engine_session
