"""Soak: single pings at a fixed rate for N minutes; API memory and database growth over time.

    uv run python -m bench.soak --minutes 10 --rate 100             # the documented soak
    uv run python -m bench.soak --minutes 2 --rate 50 --quick       # a short check

Provisions (or reuses) the bench dataset, starts `hereabouts serve` (2 workers, rate limits off,
as in bench.run), then sends single pings open-loop at `--rate` for `--minutes`, in slices of
`--slice-s` seconds. After each slice it records the API's RSS (master + workers), the database
size, the pings table size (all day partitions) and row counts, and the slice's latency
percentiles. Writes bench/results/<date>-soak.json and .md, with:

* RSS first slice → last slice (flat = no leak; the first slice includes warm-up),
* bytes per stored ping (pings + events + presence + their indexes; total database growth
  divided by pings stored), database growth per hour at the measured rate, and per 10,000
  active residents at one fix per `--fix-interval-s` (default 60 s while moving).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import scenarios
from bench.db import bench_cluster, fresh_city
from bench.load import open_loop
from bench.servers import free_port, product_server

logger = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"


async def db_sample(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT pg_database_size(current_database()) AS db_bytes,
                   (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
                      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'pings'::regclass) AS pings_bytes,
                   pg_total_relation_size('presence_events') AS events_bytes,
                   pg_total_relation_size('presence') AS presence_bytes,
                   (SELECT count(*) FROM pings) AS pings,
                   (SELECT count(*) FROM presence_events) AS events
            """
        )
        return {k: int(v) for k, v in dict(row).items()}
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    dataset, city = fresh_city(args.quick)
    config = dataset.config
    devices = min(args.devices, config.devices)
    tokens = [city.device_token(i) for i in range(devices)]
    # tracks long enough that the run never sends a device's fixes again (a replayed fix is
    # older than its device's last one: a late fix to the engine, not a walk)
    fixes = max(40, math.ceil(args.minutes * 60 * args.rate / devices) + 1)
    reqs = scenarios.single_ping_requests(city, devices, fixes, tokens)
    work = RESULTS.parent.parent / ".data" / "bench-work"
    work.mkdir(parents=True, exist_ok=True)
    server = product_server(dataset.url, free_port(offset=3), args.workers, work / "soak.log")
    server.start(timeout_s=120)
    slices: list[dict[str, Any]] = []
    try:
        start_db = asyncio.run(db_sample(dataset.dsn))
        rss_idle = server.rss_mb()
        n_slices = max(1, round(args.minutes * 60 / args.slice_s))
        t0 = time.monotonic()
        for k in range(n_slices):
            cpu0 = server.cpu_s()
            ol = asyncio.run(
                open_loop(
                    server.url,
                    reqs[(k * args.rate * args.slice_s) % len(reqs) :] + reqs,
                    rate=args.rate,
                    duration_s=args.slice_s,
                    run_tag=f"soak{int(t0)}-{k}",
                )
            )
            sample = {
                "t_s": round(time.monotonic() - t0, 1),
                "rss_mb": server.rss_mb(),
                "server_cpu_ms_per_req": round(
                    (server.cpu_s() - cpu0) / max(1, ol["requests"]) * 1000, 3
                ),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                **asyncio.run(db_sample(dataset.dsn)),
                **{
                    k2: ol[k2]
                    for k2 in ("achieved_rps", "ok", "errors", "p50_ms", "p99_ms", "max_ms")
                },
            }
            slices.append(sample)
            logger.info("soak %s", sample)
    finally:
        server.stop()
        if not args.keep_db:
            bench_cluster().stop()
    last = slices[-1]
    elapsed_h = last["t_s"] / 3600
    grown = last["db_bytes"] - start_db["db_bytes"]
    stored = last["pings"] - start_db["pings"]
    bytes_per_ping = grown / stored if stored else 0.0
    residents_pings_per_h = 10_000 * 3600 / args.fix_interval_s
    steady = bytes_per_ping  # used for the per-10,000-residents figure
    if len(slices) > 1 and last["pings"] > slices[0]["pings"]:
        steady = (last["db_bytes"] - slices[0]["db_bytes"]) / (last["pings"] - slices[0]["pings"])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_end": list(os.getloadavg())},
        "dataset": {"geofences": config.geofences, "devices": config.devices, "sending": devices},
        "rate": args.rate,
        "minutes": args.minutes,
        "workers": args.workers,
        "rss_mb_idle": rss_idle,
        "rss_mb_first_slice": slices[0]["rss_mb"],
        "rss_mb_last_slice": last["rss_mb"],
        "db_bytes_start": start_db["db_bytes"],
        "db_bytes_end": last["db_bytes"],
        "pings_stored": stored,
        "events_stored": last["events"] - start_db["events"],
        "bytes_per_ping_db": round(bytes_per_ping, 1),
        "pings_table_bytes_per_ping": round(
            (last["pings_bytes"] - start_db["pings_bytes"]) / stored, 1
        )
        if stored
        else 0.0,
        "db_growth_mb_per_hour_at_rate": round(grown / elapsed_h / 2**20, 1) if elapsed_h else 0,
        # first slice → last slice: without the one-off cost of the day partition, first pages
        "bytes_per_ping_db_steady": round(steady, 1),
        "fix_interval_s": args.fix_interval_s,
        "db_growth_mb_per_hour_per_10k_residents": round(steady * residents_pings_per_h / 2**20, 1),
        "slices": slices,
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Soak — {r['date']}",
        "",
        f"{r['minutes']} min of single pings at {r['rate']}/s (open loop), {r['workers']} API "
        f"workers, {r['dataset']['geofences']:,} geofences, {r['dataset']['sending']:,} devices "
        f"sending. Machine: {r['machine']['cores']} cores, load average at the end "
        f"{[round(x, 2) for x in r['machine']['load_average_end']]} (shared machine).",
        "",
        f"- API RSS: {r['rss_mb_idle']} MiB idle, {r['rss_mb_first_slice']} MiB after the first "
        f"slice, {r['rss_mb_last_slice']} MiB at the end.",
        f"- Stored {r['pings_stored']:,} pings and {r['events_stored']:,} events; the database "
        f"grew {(r['db_bytes_end'] - r['db_bytes_start']) / 2**20:.1f} MiB = "
        f"{r['bytes_per_ping_db']:.0f} bytes per ping overall, "
        f"{r['bytes_per_ping_db_steady']:.0f} after the first slice (pings partition alone: "
        f"{r['pings_table_bytes_per_ping']:.0f} bytes).",
        f"- Growth: {r['db_growth_mb_per_hour_at_rate']} MiB per hour at {r['rate']} pings/s; "
        f"{r['db_growth_mb_per_hour_per_10k_residents']} MiB per hour per 10,000 active "
        f"residents at one fix per {r['fix_interval_s']} s (pings are kept "
        "`HEREABOUTS_PING_RETENTION_H`, 24 h by default: day partitions are dropped).",
        "",
        "| t (s) | RSS MiB | DB MiB | pings | req/s | p50 ms | p99 ms | errors "
        "| CPU ms/req | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["slices"]:
        lines.append(
            f"| {s['t_s']} | {s['rss_mb']} | {s['db_bytes'] / 2**20:.1f} | {s['pings']:,} | "
            f"{s['achieved_rps']} | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} | "
            f"{s['server_cpu_ms_per_req']} | {s['load_average'][0]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, help="single pings per second")
    parser.add_argument("--slice-s", type=int, default=30)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fix-interval-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="5k geofences, 2k devices")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(UTC).strftime("%Y-%m-%d-%H%M") + "-soak"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
