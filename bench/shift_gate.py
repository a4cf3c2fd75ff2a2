"""CPU per field worker's single-fix ping: the shift gate's rules from memory or from the database.

    uv run python -m bench.shift_gate [--requests 1000] [--rounds 6] [--workers 200]

Field workers' fixes pass the shift gate (app/shifts/service.py `tracking_gate`) before anything
is stored; it used to read the worker's shift window and periods on every ping. The app (with
its lifespan, so the token listener and the shift rules cache run) is called through httpx's
ASGI transport with the evaluator off, on the quick bench city plus `--workers` field workers
of its organisation (each with a shift window that covers now, and a closed pause of an hour
ago, so the gate has rules to judge). Rounds alternate A/B in one process: `cached` (the gate as
the app builds it) and `db` (the gate without the cache: the previous code path). Each round
measures this process's CPU (`time.process_time`: framework, our code, asyncpg's client side)
and PostgreSQL's (the bench cluster's postmaster and its children, from /proc) per request.
Prints one JSON line per round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.city import City
from bench.db import Dataset, bench_cluster, fresh_city
from bench.servers import tree_cpu_s

logger = logging.getLogger("bench")


def _pg_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by the bench cluster's postmaster and its children."""
    return 0.0 if pid is None else tree_cpu_s(pid)


def _body(city: City, device: int, k: int) -> bytes:
    fix = city.track(device, k + 1)[k]
    at = datetime.now(UTC) - timedelta(seconds=30)
    return json.dumps(
        {
            "pings": [
                {
                    "id": uuid.uuid4().hex,
                    "lon": fix.lon,
                    "lat": fix.lat,
                    "accuracy_m": fix.accuracy_m,
                    "recorded_at": at.isoformat(),
                }
            ]
        }
    ).encode()


async def _workers(settings: Any, n: int) -> list[str]:
    """`n` field workers of the city's organisation with a shift covering now; their tokens."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.accounts import service as accounts_service
    from app.accounts.models import Role
    from app.core.db import create_engine
    from app.core.security import StaffClaims, issue_staff_token

    engine = create_engine(settings)
    tokens = []
    now = datetime.now(UTC)
    async with AsyncSession(engine, expire_on_commit=False) as s:
        org = (await s.execute(text("SELECT id FROM organisations ORDER BY slug LIMIT 1"))).one()[0]
        await s.execute(text("DELETE FROM staff_users WHERE email LIKE 'gatebench-%'"))
        for i in range(n):
            user = await accounts_service.create_user(
                s,
                org,
                email=f"gatebench-{i}@bench.example",
                full_name=f"Gate bench {i}",
                password="gate-bench-password",  # noqa: S106 - a bench account
                role=Role.field_worker,
            )
            await s.execute(
                text(
                    "INSERT INTO notification_preferences (id, organisation_id, staff_user_id,"
                    " time_zone, shift_start, shift_end) VALUES (gen_random_uuid(), :o, :u,"
                    " 'UTC', :a, :b)"
                ),
                {
                    "o": org,
                    "u": user.id,
                    "a": (now - timedelta(hours=4)).time(),
                    "b": (now + timedelta(hours=4)).time(),
                },  # fmt: skip
            )
            await s.execute(
                text(
                    "INSERT INTO staff_periods (id, organisation_id, staff_user_id, kind,"
                    " started_at, ended_at, end_reason) VALUES (gen_random_uuid(), :o, :u,"
                    " 'pause', :a, :b, 'worker')"
                ),
                {
                    "o": org,
                    "u": user.id,
                    "a": now - timedelta(hours=2),
                    "b": now - timedelta(hours=1),
                },  # fmt: skip
            )
            tokens.append(
                issue_staff_token(settings, StaffClaims(user.id, org, Role.field_worker.value))
            )
        await s.commit()
    await engine.dispose()
    return tokens


async def _send(client: httpx.AsyncClient, bodies: list[tuple[str, bytes]], c: int) -> None:
    gate = asyncio.Semaphore(c)

    async def one(token: str, body: bytes) -> None:
        async with gate:
            r = await client.post(
                "/v1/pings",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    await asyncio.gather(*(one(t, b) for t, b in bodies))


async def measure(args: argparse.Namespace, dataset: Dataset, city: City) -> dict[str, Any]:
    from app.core.config import Settings
    from app.main import create_app
    from app.shifts import service as shifts_service

    settings = Settings(
        database_url=dataset.url,
        run_worker_in_process=False,
        run_ping_evaluator_in_process=False,
        rate_limit_enabled=False,
        log_level="WARNING",
        push_allow_loopback=True,
    )
    tokens = await _workers(settings, args.workers)
    app = create_app(settings)
    cached_gate = app.state.staff_location_gate
    db_gate = shifts_service.tracking_gate(settings)  # no cache: the previous code path
    pg_pid = bench_cluster().postmaster_pid()
    rounds: list[dict[str, float]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            while not app.state.device_tokens.live:
                await asyncio.sleep(0.05)
            warm = [(t, _body(city, i, 0)) for i, t in enumerate(tokens)]
            await _send(client, warm, args.concurrency)
            for r in range(args.rounds):
                row: dict[str, float] = {}
                for name in ("cached", "db") if r % 2 == 0 else ("db", "cached"):
                    app.state.staff_location_gate = cached_gate if name == "cached" else db_gate
                    bodies = [
                        (tokens[i % len(tokens)], _body(city, i % len(tokens), 1 + r))
                        for i in range(args.requests)
                    ]
                    cpu0, pg0 = time.process_time(), _pg_cpu_s(pg_pid)
                    await _send(client, bodies, args.concurrency)
                    cpu, pg = time.process_time() - cpu0, _pg_cpu_s(pg_pid) - pg0
                    row[f"{name}_app_ms"] = round(cpu / args.requests * 1000, 3)
                    row[f"{name}_pg_ms"] = round(pg / args.requests * 1000, 3)
                row["load1"] = os.getloadavg()[0]
                rounds.append(row)
                print(json.dumps({"round": r + 1, **row}), flush=True)
    keys = [k for k in rounds[0] if k != "load1"]
    return {
        "requests_per_round": args.requests,
        "workers": args.workers,
        "concurrency": args.concurrency,
        **{f"{k}_median": statistics.median(x[k] for x in rounds) for k in keys},
        "load1": [x["load1"] for x in rounds],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shift_gate", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        dataset, city = fresh_city(quick=True)  # migrations run their own event loop
        result = asyncio.run(measure(args, dataset, city))
    finally:
        bench_cluster().stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
