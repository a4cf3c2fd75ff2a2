"""The worker inside the API process, the CLI commands and the metrics they expose."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.core.config import Settings
from app.main import create_app
from app.notifications.vapid import parse_private_key
from tests.notifications.fake_push import FakePushService
from tests.notifications.test_worker import World, all_settled, statuses, wait_for


async def test_api_lifespan_runs_a_worker_that_delivers(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    await world.subscribe(alice, fake_push)
    settings = push_settings.model_copy(update={"run_worker_in_process": True})
    app = create_app(settings, engine=push_engine)
    async with app.router.lifespan_context(app):
        await world.notify([alice])
        await wait_for(lambda: all_settled(push_engine))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            metrics = (await client.get("/metrics")).text
    assert await statuses(push_engine) == {"delivered": 1}
    for name in (
        "hereabouts_push_queued",
        "hereabouts_push_in_flight",
        'hereabouts_push_deliveries_total{result="delivered"}',
        'hereabouts_push_deliveries_total{result="retried"}',
        'hereabouts_push_deliveries_total{result="gone"}',
        'hereabouts_push_deliveries_total{result="failed"}',
        'hereabouts_push_deliveries_total{result="dead"}',
        "hereabouts_push_latency_seconds_bucket",
    ):
        assert name in metrics


async def test_api_lifespan_without_the_worker_setting_sends_nothing(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    await world.subscribe(alice, fake_push)
    app = create_app(push_settings, engine=push_engine)
    async with app.router.lifespan_context(app):
        await world.notify([alice])
        await asyncio.sleep(0.5)
    assert fake_push.requests == 0


def test_vapid_generate_writes_a_private_key_file(tmp_path: Path) -> None:
    out = tmp_path / "vapid.pem"
    runner = CliRunner()
    result = runner.invoke(cli_app, ["vapid", "generate", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "public key" in result.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    parse_private_key(out.read_bytes())
    again = runner.invoke(cli_app, ["vapid", "generate", "--out", str(out)])
    assert again.exit_code == 1


def test_embedded_default_generates_one_key_and_keeps_it(
    settings: Settings, tmp_path: Path
) -> None:
    from app.notifications.vapid import VapidSigner

    local = settings.model_copy(update={"data_dir": tmp_path, "vapid_private_key": None})
    first = VapidSigner.from_settings(local).public_key
    assert (tmp_path / "vapid_private_key.pem").exists()
    assert VapidSigner.from_settings(local).public_key == first
