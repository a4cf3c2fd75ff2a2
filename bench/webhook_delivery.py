"""Webhook delivery throughput: events → outbox → WebhookWorker → a loopback receiver.

    uv run python -m bench.webhook_delivery [--events 2500] [--endpoints 4] [--concurrency 64]
        [--per-endpoint 16] [--json OUT]

1. Starts a receiver in a separate process on a loopback port (aiohttp): it answers 200 to
   every POST and verifies the signature of the first and every 50th request with the
   `standardwebhooks` library (a verification failure fails the run).
2. Uses the embedded PostGIS (HEREABOUTS_EMBEDDED_PORT) with a scratch database
   `hereabouts_bench_webhooks`: one organisation, `--endpoints` endpoints subscribed to `*`,
   then `--events` events recorded through `events_service.record` in one transaction (the fan-out
   is timed separately): events × endpoints messages.
3. One WebhookWorker in this process drains the outbox (claim with SKIP LOCKED → sign → POST →
   record each attempt), timed from start to the last message delivered.
4. CPU per message from /proc, split into sender (this process), PostgreSQL (postmaster and
   backends) and the receiver: steadier than wall-clock on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.core.config import Environment, Settings
from app.core.db import create_engine, create_sessionmaker
from bench.push_fanout import _postmaster_pid

DB_NAME = "hereabouts_bench_webhooks"


def _stats(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


async def _prepare(
    settings: Settings, url: str, endpoints: int, base: str
) -> tuple[Any, list[str]]:
    from app.accounts import service as accounts_service
    from app.accounts.models import Role
    from app.accounts.principal import Principal
    from app.webhooks import service as webhooks_service
    from app.webhooks.schemas import EndpointCreate

    engine = create_engine(settings, url)
    sm = create_sessionmaker(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE webhook_attempts, push_deliveries, webhook_endpoints, outbox")
        )
        await conn.execute(text("TRUNCATE organisations CASCADE"))
    async with sm() as s, s.begin():
        org = await accounts_service.create_organisation(s, f"bench-{secrets.token_hex(3)}", "B")
        user = await accounts_service.create_user(
            s,
            org.id,
            email=f"bench-{secrets.token_hex(3)}@example.org",
            full_name="Bench",
            password=secrets.token_urlsafe(16),
            role=Role.admin,
        )
        admin = Principal("staff", user.id, org.id, Role.admin)
        out = []
        for i in range(endpoints):
            _ep, secret = await webhooks_service.create_endpoint(
                s, settings, admin, EndpointCreate(url=f"{base}/e{i}", event_types=["*"])
            )
            out.append(secret)
    await engine.dispose()
    return org.id, out


async def _record(settings: Settings, url: str, org: uuid.UUID, events: int) -> float:
    from app.core.subject import SubjectRef
    from app.events import service as events_service
    from app.events.types import Event, EventType, Source
    from app.webhooks import service as webhooks_service

    webhooks_service.register()
    engine = create_engine(settings, url)
    sm = create_sessionmaker(engine)
    batch = [
        Event(
            id=uuid.uuid4(),
            organisation_id=org,
            type=EventType.place_entered,
            source=Source.ping,
            occurred_at=datetime.now(UTC),
            subject=SubjectRef("device", uuid.uuid4(), org),
            explanation={"evidence": 2, "distance_m": 0.0},
        )
        for _ in range(events)
    ]
    started = time.perf_counter()
    async with sm() as s, s.begin():
        await events_service.record(s, batch, settings)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


async def _drain(settings: Settings, url: str, total: int) -> tuple[float, dict[str, Any]]:
    from app.webhooks.worker import WebhookWorker

    engine = create_engine(settings, url)
    worker = WebhookWorker(settings, engine)
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(600):
            while True:
                async with engine.connect() as conn:
                    done = (
                        await conn.execute(
                            text(
                                "SELECT count(*) FROM outbox "
                                "WHERE channel = 'webhook' AND status = 'delivered'"
                            )
                        )
                    ).scalar_one()
                if done >= total:
                    break
                await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
        await task
    async with engine.connect() as conn:
        attempts = (await conn.execute(text("SELECT count(*) FROM webhook_attempts"))).scalar_one()
    await engine.dispose()
    return elapsed, {"delivered": total, "attempts": attempts, "outcomes": worker.stats.outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2500)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-endpoint", type=int, default=16)
    parser.add_argument("--database-url", default=None, help="a SCRATCH database")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    from app.core.cluster import EmbeddedCluster
    from app.core.config import PROJECT_ROOT

    if args.database_url:
        url = args.database_url
    else:
        port = int(os.environ.get("HEREABOUTS_EMBEDDED_PORT", "54329"))
        cluster = EmbeddedCluster(data_dir=PROJECT_ROOT / ".data" / "pg", port=port)
        cluster.ensure_running()
        cluster.ensure_database(DB_NAME)
        url = cluster.url(DB_NAME)
    from alembic import command

    from app.core.ops import alembic_config

    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    settings = Settings(
        environment=Environment.test,
        database_url=url,
        webhook_allow_loopback=True,
        webhook_worker_concurrency=args.concurrency,
        webhook_per_endpoint_concurrency=args.per_endpoint,
        log_level="WARNING",
    )
    total = args.events * args.endpoints
    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    # the receiver needs the secrets, which exist only once the endpoints are registered: the
    # port is chosen first (a throwaway bind), the endpoints created, then the receiver started
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{free_port}"
    org, secrets_ = asyncio.run(_prepare(settings, url, args.endpoints, base))
    server = ctx.Process(
        target=_serve_on,
        args=(free_port, {f"e{i}": s for i, s in enumerate(secrets_)}, port_queue),
        daemon=True,
    )
    server.start()
    port_queue.get(timeout=30)
    pg_pid = _postmaster_pid(url)
    from bench.servers import tree_cpu_s

    def cpu() -> tuple[float, float, float]:
        assert server.pid is not None
        return (
            time.process_time(),
            tree_cpu_s(pg_pid) if pg_pid else 0.0,
            tree_cpu_s(server.pid),
        )

    try:
        c0 = cpu()
        record_s = asyncio.run(_record(settings, url, org, args.events))
        c1 = cpu()
        drain_s, result = asyncio.run(_drain(settings, url, total))
        c2 = cpu()
        seen = _stats(free_port)
    finally:
        server.terminate()
        server.join(5)

    def per_msg(before: tuple[float, ...], after: tuple[float, ...]) -> list[int]:
        return [round((b - a) / total * 1e6) for a, b in zip(before, after, strict=True)]

    fan_cpu = per_msg(c0, c1)
    drain_cpu = per_msg(c1, c2)
    rate = total / drain_s
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}")
    print(
        f"dataset: {args.events} events × {args.endpoints} endpoints = {total} messages; "
        f"concurrency {args.concurrency}, {args.per_endpoint} per endpoint"
    )
    print(f"fan-out (events_service.record, one transaction): {total / record_s:,.0f} messages/s")
    print(f"outbox → WebhookWorker → loopback receiver: {rate:,.0f} messages/s ({drain_s:.2f} s)")
    print(
        f"CPU µs per message [sender, PostgreSQL, receiver]: delivery {drain_cpu} = "
        f"{sum(drain_cpu)}; fan-out {fan_cpu}"
    )
    print(f"receiver saw: {seen}; worker: {result}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "messages": total,
                    "events": args.events,
                    "endpoints": args.endpoints,
                    "concurrency": args.concurrency,
                    "per_endpoint": args.per_endpoint,
                    "fan_out_messages_per_s": round(total / record_s),
                    "delivered_per_s": round(rate),
                    "seconds": round(drain_s, 3),
                    "cpu_us_per_message_sender_postgres_receiver": drain_cpu,
                    "fan_out_cpu_us_per_message": fan_cpu,
                    "receiver": seen,
                    "worker": result,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                },
                indent=2,
            )
            + "\n"
        )
    if seen.get("violations") or seen.get("requests", 0) < total:
        raise SystemExit(f"the receiver saw {seen}")


def _serve_on(port: int, secrets_by_path: dict[str, str], port_queue: Any) -> None:
    """`_serve` on a given port."""

    async def main() -> None:
        from aiohttp import web
        from standardwebhooks.webhooks import Webhook

        hooks = {p: Webhook(s) for p, s in secrets_by_path.items()}
        stats = {"requests": 0, "verified": 0, "violations": 0}

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            stats["requests"] += 1
            if stats["requests"] % 50 == 1:
                try:
                    hooks[request.match_info["name"]].verify(body, dict(request.headers))
                    stats["verified"] += 1
                except Exception:  # noqa: BLE001 - counted, the run fails
                    stats["violations"] += 1
            return web.Response(status=200)

        async def report(_request: web.Request) -> web.Response:
            return web.json_response(stats)

        app = web.Application()
        app.router.add_post("/{name}", handle)
        app.router.add_get("/_stats", report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        port_queue.put(port)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main())


if __name__ == "__main__":
    main()
