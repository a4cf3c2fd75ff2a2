"""Webhook tests: a real loopback receiver that verifies every signature with `standardwebhooks`,
and a database of their own (workers need committed rows), emptied before each test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from tests.conftest import empty_tables, migrated_database


@dataclass
class Route:
    secret: str = ""
    answers: list[int] = field(default_factory=list)  # scripted statuses, then 200
    hang: bool = False
    retry_after: str | None = None  # sent with 429 / 503
    received: list[dict[str, Any]] = field(default_factory=list)  # verified deliveries
    requests: int = 0
    bad_signatures: int = 0


class Receiver:
    """An aiohttp server on 127.0.0.1; each path is one endpoint with its own script."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0
        # set by stop(): a hanging answer ends then, instead of holding the server's shutdown
        # for its 60 s grace (as tests/notifications/fake_push.py does)
        self.release = asyncio.Event()

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, name: str) -> str:
        self.routes.setdefault(name, Route())
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _handle(self, request: web.Request) -> web.Response:
        route = self.routes[request.match_info["name"]]
        route.requests += 1
        body = await request.read()
        if route.hang:
            await self.release.wait()
            return web.Response(status=503, text="stopped")
        try:
            Webhook(route.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            route.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        status = route.answers.pop(0) if route.answers else 200
        if 200 <= status < 300:
            route.received.append({"id": request.headers["webhook-id"], "body": json.loads(body)})
        if status in (301, 302, 307):
            return web.Response(status=status, headers={"Location": self.url("elsewhere")})
        headers = {"Retry-After": route.retry_after} if route.retry_after else {}
        if status in (429, 503):
            return web.Response(status=status, text="later", headers=headers)
        return web.Response(status=status, text="" if status < 300 else "nope")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture(scope="session")
def wh_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_loopback": True,
            "webhook_poll_interval_s": 0.1,
            "webhook_backoff_base_s": 0.05,
            "webhook_backoff_cap_s": 0.2,
            "webhook_timeout_s": 1.0,
            "webhook_connect_timeout_s": 1.0,
            "webhook_lease_s": 5.0,
        }
    )


@pytest.fixture(scope="session")
def wh_database_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_webhooks") as url:
        yield url


@pytest.fixture(scope="session")
async def wh_engine_session(wh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(wh_database_url, pool_size=10, max_overflow=10)
    yield engine
    await engine.dispose()


@pytest.fixture
async def wh_engine(wh_engine_session: AsyncEngine) -> AsyncEngine:
    async with wh_engine_session.begin() as conn:
        await empty_tables(
            conn,
            "webhook_attempts",
            "webhook_endpoints",
            "outbox",
            "notifications",
            "organisations",
        )
    return wh_engine_session
