"""CPU per single-fix 202 request in one process: the plain-ASGI path against the route.

    uv run python -m bench.ping_http [--requests 2000] [--rounds 5] [--concurrency 16]

No uvicorn and no sockets on the client side: the app (with its lifespan, so the device token
cache listens) is called through httpx's ASGI transport, the evaluator switched off, on the
quick bench city. Each round sends the same number of single-fix requests of many devices
through each path — the fast path (app/presence/fastpath.py) and the route (`?mode=async`,
which means the same for one fix and is left to FastAPI) — `--concurrency` at a time, so the
202 group commit forms as under load, and measures this process's CPU time per request
(`time.process_time`: the framework, our code and asyncpg's client side; PostgreSQL's side is
the same statement for both). On a shared machine this is far steadier than requests per
second. Prints one JSON line per round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.city import City
from bench.db import Dataset, run_on_city

logger = logging.getLogger("bench")


def _body(city: City, device: int, k: int) -> bytes:
    fix = city.track(device, k + 1)[k]
    at = datetime.now(UTC) - timedelta(seconds=60)
    return json.dumps(
        {
            "pings": [
                {
                    "id": uuid.uuid4().hex,
                    "lon": fix.lon,
                    "lat": fix.lat,
                    "accuracy_m": fix.accuracy_m,
                    "recorded_at": at.isoformat(),
                    "speed_mps": fix.speed_mps,
                }
            ]
        }
    ).encode()


async def _send(
    client: httpx.AsyncClient, bodies: list[tuple[str, bytes]], route: bool, concurrency: int
) -> float:
    """CPU ms per request for these requests through one path."""
    gate = asyncio.Semaphore(concurrency)
    params = {"mode": "async"} if route else None

    async def one(token: str, body: bytes) -> None:
        async with gate:
            r = await client.post(
                "/v1/pings",
                content=body,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    cpu0 = time.process_time()
    await asyncio.gather(*(one(t, b) for t, b in bodies))
    return (time.process_time() - cpu0) / len(bodies) * 1000


async def measure(args: argparse.Namespace, dataset: Dataset, city: City) -> dict[str, Any]:
    from app.core.config import Settings
    from app.core.metrics import PING_FAST_PATH
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
    devices = min(args.devices, city.config.devices)
    tokens = [city.device_token(i) for i in range(devices)]
    rounds: list[dict[str, float]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            while not app.state.device_tokens.live:
                await asyncio.sleep(0.05)
            # every token once through the route: the cache knows them all from here on
            warm = [(tokens[d], _body(city, d, 0)) for d in range(devices)]
            await _send(client, warm, route=True, concurrency=args.concurrency)
            for r in range(args.rounds):
                row: dict[str, float] = {}
                for route in (False, True) if r % 2 == 0 else (True, False):
                    bodies = [
                        (tokens[i % devices], _body(city, i % devices, 1 + r))
                        for i in range(args.requests)
                    ]
                    fast_before = PING_FAST_PATH._value.get()
                    ms = await _send(client, bodies, route, args.concurrency)
                    taken = PING_FAST_PATH._value.get() - fast_before
                    expected = 0 if route else args.requests
                    if taken != expected:
                        raise RuntimeError(f"fast path took {taken} of {args.requests} requests")
                    row["route" if route else "fast"] = round(ms, 3)
                rounds.append(row)
                print(json.dumps({"round": r + 1, **row}), flush=True)
    return {
        "requests_per_round": args.requests,
        "concurrency": args.concurrency,
        "fast_cpu_ms_per_req_median": statistics.median(x["fast"] for x in rounds),
        "route_cpu_ms_per_req_median": statistics.median(x["route"] for x in rounds),
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ping_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--devices", type=int, default=500)
    args = parser.parse_args(argv)
    return run_on_city(measure, args, quick=True)


if __name__ == "__main__":
    sys.exit(main())
