"""CPU per synchronous 100-fix `POST /v1/pings` in one process, with an optional profile.

    uv run python -m bench.ping_batch [--requests 200] [--rounds 5] [--per-batch 100]
                                      [--concurrency 8] [--profile OUT.txt]

Like `bench.ping_http` (no uvicorn, no sockets: httpx's ASGI transport into the app with its
lifespan, the evaluator and the delivery worker switched off, the quick bench city), but for
what `pings_batch100` sends: `--per-batch` consecutive fixes of one device per request,
evaluated in the request (200 with the events). Each round sends `--requests` batches of
distinct devices, each batch the next stretch of that device's track with fresh ids and recent
times, and reports this process's CPU time per request (`time.process_time`: the framework, our
code and asyncpg's client side, plus the in-process client's share, the same for every code
under test) and the PostgreSQL backends' CPU per request (from /proc, the bench cluster's
processes). `--profile` samples the rounds with pyinstrument and writes its text tree.
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
from pathlib import Path
from typing import Any

import httpx

from bench.city import City
from bench.db import Dataset, bench_cluster_cpu_s, run_on_city

logger = logging.getLogger("bench")


def _body(city: City, device: int, start: int, n: int) -> bytes:
    track = city.track(device, start + n)[start:]
    now = datetime.now(UTC) - timedelta(seconds=5)
    last = track[-1].seconds
    return json.dumps(
        {
            "pings": [
                {
                    "id": uuid.uuid4().hex,
                    "lon": f.lon,
                    "lat": f.lat,
                    "accuracy_m": f.accuracy_m,
                    "recorded_at": (now - timedelta(seconds=last - f.seconds))
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    "speed_mps": f.speed_mps,
                }
                for f in track
            ]
        }
    ).encode()


async def _send(
    client: httpx.AsyncClient, bodies: list[tuple[str, bytes]], concurrency: int
) -> int:
    gate = asyncio.Semaphore(concurrency)
    events = 0

    async def one(token: str, body: bytes) -> None:
        nonlocal events
        async with gate:
            r = await client.post(
                "/v1/pings",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
            events += len(r.json()["events"])

    await asyncio.gather(*(one(t, b) for t, b in bodies))
    return events


async def measure(args: argparse.Namespace, dataset: Dataset, city: City) -> dict[str, Any]:
    from app.core.config import Settings
    from app.main import create_app

    settings = Settings(
        database_url=dataset.url,
        run_worker_in_process=False,
        run_ping_evaluator_in_process=False,
        rate_limit_enabled=False,
        log_level="WARNING",
        push_allow_loopback=True,
    )
    app = create_app(settings)
    devices = min(args.requests, city.config.devices)
    tokens = [city.device_token(i) for i in range(devices)]
    rounds: list[dict[str, float]] = []
    profiler: Any = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            while not app.state.device_tokens.live:
                await asyncio.sleep(0.05)
            warm = [(tokens[d], _body(city, d, 0, args.per_batch)) for d in range(devices)]
            await _send(client, warm, args.concurrency)
            for r in range(args.rounds):
                start = (r + 1) * args.per_batch
                bodies = [
                    (tokens[d], _body(city, d, start, args.per_batch)) for d in range(devices)
                ]
                if profiler is not None:
                    profiler.start()
                pg0, cpu0 = bench_cluster_cpu_s(), time.process_time()
                events = await _send(client, bodies, args.concurrency)
                cpu, pg = time.process_time() - cpu0, bench_cluster_cpu_s() - pg0
                if profiler is not None:
                    profiler.stop()
                row = {
                    "api_ms": round(cpu / len(bodies) * 1000, 3),
                    "pg_ms": round(pg / len(bodies) * 1000, 3),
                    "events_per_req": round(events / len(bodies), 2),
                }
                rounds.append(row)
                print(json.dumps({"round": r + 1, **row}), flush=True)
    if profiler is not None:
        from pyinstrument.renderers import ConsoleRenderer

        session = profiler.last_session
        flat = ConsoleRenderer(flat=True, show_all=True).render(session)
        tree = ConsoleRenderer(show_all=False).render(session)
        Path(args.profile).write_text(flat + "\n" + tree)
    return {
        "requests_per_round": len(tokens),
        "per_batch": args.per_batch,
        "concurrency": args.concurrency,
        "load_average": os.getloadavg()[0],
        "api_cpu_ms_per_req_median": statistics.median(x["api_ms"] for x in rounds),
        "pg_cpu_ms_per_req_median": statistics.median(x["pg_ms"] for x in rounds),
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ping_batch", description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", default="")
    args = parser.parse_args(argv)
    return run_on_city(measure, args, quick=True)


if __name__ == "__main__":
    sys.exit(main())
