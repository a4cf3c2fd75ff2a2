"""The cost curve: lookup latency as the number of geofences grows (1k -> 10k -> 100k -> 1M).

For each size the city is provisioned (cached like any other dataset), then the baseline lookup
and, when the product has it, `GET /v1/geofences/resolve` are measured with the open-loop
generator at one fixed rate, so the curve shows latency growth rather than saturation. Writes
bench/results/<date>-scale.json and docs/benchmarks-scale.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.config import PROJECT_ROOT
from bench import scenarios
from bench.city import City, CityConfig
from bench.db import provision
from bench.load import open_loop, run_wrk, write_requests
from bench.servers import Server, baseline_server, free_port, product_server
from bench.sqlprobe import batched_points_per_s, lookup_latency

if TYPE_CHECKING:
    from bench.run import Profile

logger = logging.getLogger("bench")
SIZES = [1_000, 10_000, 100_000, 1_000_000]
QUICK_SIZES = [1_000, 5_000, 20_000]
CHART = PROJECT_ROOT / "docs" / "benchmarks-scale.png"


def _latency(
    server: Server,
    name: str,
    reqs: list[Any],
    rate: int,
    seconds: int,
    warm: list[Any] | None = None,
) -> dict[str, Any]:
    """A 1 s warm-up with `warm` (else `reqs`), then the open loop of `reqs`."""
    from bench.run import WORK

    path = write_requests(WORK / f"scale-{name}-warm.tsv", warm or reqs)
    run_wrk(server.url, path, duration_s=1, connections=8, run_tag=f"{name}-warm")
    return asyncio.run(open_loop(server.url, reqs, rate=rate, duration_s=seconds, run_tag=name))


def run_scale(args: argparse.Namespace, profile: Profile) -> Path:
    from bench.run import RESULTS, WORK, machine, openapi_routes

    WORK.mkdir(parents=True, exist_ok=True)
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    rate = args.rate or (200 if args.quick else 500)
    seconds = profile.open_loop_s
    if args.scale_devices:
        return run_device_scale(args, profile, sizes, rate)
    points: list[dict[str, Any]] = []
    for size in sizes:
        config = CityConfig(seed=args.seed, geofences=size, devices=1_000)
        dataset = provision(config)
        city = City(config)
        row: dict[str, Any] = {"geofences": size, "load_seconds": dataset.load_seconds}
        sql_points = city.points_near_places(10_000, salt=4)
        row["sql"] = asyncio.run(lookup_latency(dataset.dsn, sql_points[:3000]))
        row["sql_batched"] = asyncio.run(batched_points_per_s(dataset.dsn, sql_points))
        base = baseline_server(dataset.dsn, free_port(), args.workers, WORK / "baseline.log")
        base.start()
        try:
            row["baseline"] = _latency(
                base, f"base{size}", scenarios.baseline_requests(city, 5_000), rate, seconds
            )
        finally:
            base.stop()
        prod = product_server(dataset.url, free_port(offset=1), args.workers, WORK / "product.log")
        prod.start(timeout_s=120)
        try:
            if ("GET", "/v1/geofences/resolve") in openapi_routes(prod.url):
                tokens = [city.device_token(i) for i in range(200)]
                row["resolve"] = _latency(
                    prod,
                    f"resolve{size}",
                    scenarios.resolve_requests(city, 5_000, tokens),
                    rate,
                    seconds,
                )
            else:
                row["resolve"] = {"status": "not available"}
        finally:
            prod.stop()
        logger.info("scale %s: %s", size, {k: v for k, v in row.items() if k != "resolve"})
        points.append(row)

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "scale-quick" if args.quick else "scale",
        "machine": machine(),
        "rate_rps": rate,
        "seconds_per_point": seconds,
        "points": points,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(UTC).strftime("%Y-%m-%d-%H%M") + (
        "-scale-quick" if args.quick else "-scale"
    )
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, CHART)
    logger.info("chart: %s", CHART)
    return path


def run_device_scale(
    args: argparse.Namespace, profile: Profile, sizes: list[int], rate: int
) -> Path:
    """Single pings at a fixed rate as the number of registered devices grows (10k geofences).

    What grows with devices: the token-hash index (auth), device_settings, presence_subjects and
    presence. Before measuring, every registered device is given presence (`seed_presence`: a
    last fix an hour ago and an open visit at a place), so at 1,000,000 devices the tables hold
    1,000,000 devices' presence. 1,000 devices send (the rest are registered and present, as in a
    town where few are moving).
    """
    from bench.db import reset_activity
    from bench.run import RESULTS, WORK, machine

    WORK.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    for size in sizes:
        config = CityConfig(seed=args.seed, geofences=args.geofences or 10_000, devices=size)
        dataset = provision(config)
        asyncio.run(reset_activity(dataset.dsn))
        seeded = asyncio.run(seed_presence(dataset.dsn))
        city = City(config)
        sending = min(size, 1_000)
        tokens = [city.device_token(i) for i in range(0, size, max(1, size // sending))][:sending]
        prod = product_server(dataset.url, free_port(offset=1), args.workers, WORK / "product.log")
        prod.start(timeout_s=120)
        try:
            # the warm-up sends each device's first two fixes, the open loop the rest of its
            # track (long enough not to wrap): fixes replayed for a device that has sent later
            # ones would be late fixes to the engine, not walks (bench.run.DevicePool)
            fixes = 2 + math.ceil(rate * profile.open_loop_s * 1.2 / len(tokens))
            warm = scenarios.single_ping_requests(city, len(tokens), fixes, tokens, 0, 2)
            reqs = scenarios.single_ping_requests(city, len(tokens), fixes, tokens, 2)
            row: dict[str, Any] = {
                "devices": size,
                "load_seconds": dataset.load_seconds,
                "presence_rows": seeded,
            }
            row["pings_single"] = _latency(
                prod, f"devices{size}", reqs, rate, profile.open_loop_s, warm
            )
        finally:
            prod.stop()
        logger.info("device scale %s: %s", size, row)
        points.append(row)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "scale-devices",
        "machine": machine(),
        "geofences": args.geofences or 10_000,
        "rate_rps": rate,
        "points": points,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (datetime.now(UTC).strftime("%Y-%m-%d-%H%M") + "-scale-devices.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


SEED_SUBJECTS = """
INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id, last_fix_at, last_lon,
                               last_lat, last_accuracy_m)
SELECT d.id, 'device', d.organisation_id, now() - interval '1 hour', 0.0, 0.0, 10.0
FROM devices d
"""
SEED_PRESENCE = """
WITH g AS (
    SELECT id, organisation_id, row_number() OVER (ORDER BY id) AS rn
    FROM geofences WHERE deleted_at IS NULL
), d AS (  -- one place per device, spread by a hash of its id (an equi-join: a hash join)
    SELECT d.id, d.organisation_id,
           1 + abs(hashtext(d.id::text)::bigint) % (SELECT count(*) FROM g) AS rn
    FROM devices d
)
INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id, state, since,
                      last_fix_at, dwell_emitted)
SELECT d.id, g.id, 'device', d.organisation_id, 'inside', now() - interval '1 hour',
       now() - interval '1 hour', true
FROM d JOIN g ON g.rn = d.rn AND g.organisation_id = d.organisation_id
"""


async def seed_presence(dsn: str) -> int:
    """Presence for every registered device (after reset_activity emptied it): rows inserted."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SEED_SUBJECTS)
        status = await conn.execute(SEED_PRESENCE)
        await conn.execute("ANALYZE presence_subjects; ANALYZE presence")
        return int(status.split()[-1])
    finally:
        await conn.close()


def chart(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = [p["geofences"] for p in result["points"]]
    for key, label, colour in (
        ("sql", "PostGIS only, no HTTP", "tab:green"),
        ("baseline", "baseline over HTTP", "tab:gray"),
        ("resolve", "GET /v1/geofences/resolve", "tab:blue"),
    ):
        rows = [p.get(key, {}) for p in result["points"]]
        if not all("p99_ms" in r for r in rows):
            continue
        ax.plot(xs, [r["p50_ms"] for r in rows], "o--", color=colour, label=f"{label} p50")
        ax.plot(xs, [r["p99_ms"] for r in rows], "o-", color=colour, label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")  # p99 spikes from a shared machine would flatten everything else
    ax.set_xlabel("geofences")
    ax.set_ylabel("latency (ms)")
    m = result["machine"]
    ax.set_title(
        f"Lookup latency vs geofences, HTTP at {result['rate_rps']} req/s open loop\n"
        f"{result['mode']}, {result['date'][:16]}, {m['cores']} cores, "
        f"load avg at start {m['load_average_at_start'][0]}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    # redraw the chart from a saved result: python -m bench.scale bench/results/<x>-scale.json
    import sys

    chart(json.loads(Path(sys.argv[1]).read_text()), CHART)
