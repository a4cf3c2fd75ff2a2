"""Geofence resolve latency with 100,000 places loaded (docs/benchmarks.md, "Geofence resolve").

    HEREABOUTS_EMBEDDED_PORT=54351 uv run python -m bench.geofence_resolve [--places 100000]

Uses a throwaway database in the embedded cluster (dropped at the end), migrated to head. The
places are generated set-based (one INSERT ... SELECT generate_series): 80 % small rectangles
(buildings, 20-120 m a side) and 20 % circles (15-300 m), trigger distances 30-100 m, spread
evenly over a 60 km × 40 km area (≈ 42 places per km², denser than any real council), all in one
organisation so nothing is filtered away before the spatial search. Then `service.resolve` — the
function check-ins and pings call — is timed for random points in that area with accuracies of
5-50 m, one call after another on one connection, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.core.cluster import default_cluster
from app.core.db import driver_connection
from app.core.ops import alembic_config
from app.geofences import repository, service

DATABASE = "hereabouts_bench_geofences"
WEST, SOUTH, EAST, NORTH = -2.40, 53.55, -1.50, 53.91  # ≈ 60 km × 40 km around the Pennines

GENERATE = """
INSERT INTO geofences (id, organisation_id, external_id, name, category, tags, shape_kind,
                       radius_m, center, geom, trigger_distance_m, dwell_s, metadata)
SELECT gen_random_uuid(), :org, 'B-' || i, 'Place ' || i,
       (ARRAY['library','park','school','depot','other'])[1 + i % 5], '{}',
       CASE WHEN circle THEN 'circle' ELSE 'polygon' END,
       CASE WHEN circle THEN r END,
       CASE WHEN circle THEN pt END,
       CASE WHEN circle
            THEN ST_Buffer(pt::geography, r / cos(pi() / 64), 'quad_segs=16')::geometry
            ELSE ST_MakeEnvelope(lon - dx, lat - dy, lon + dx, lat + dy, 4326) END,
       30 + (i % 8) * 10, 300, '{}'
FROM (
  SELECT i, lon, lat, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS pt,
         random() < 0.2 AS circle, 15 + random() * 285 AS r,
         (10 + random() * 50) / (111320 * cos(radians(lat))) AS dx,
         (10 + random() * 50) / 110574 AS dy
  FROM (SELECT i, CAST(:west AS float8) + random() * (CAST(:east AS float8) - :west) AS lon,
               CAST(:south AS float8) + random() * (CAST(:north AS float8) - :south) AS lat
        FROM generate_series(1, CAST(:n AS int)) AS i) s
) p
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def prepare_database() -> str:
    from alembic import command

    cluster = default_cluster()
    cluster.ensure_running()
    cluster.drop_database(DATABASE)
    cluster.ensure_database(DATABASE)
    url = cluster.url(DATABASE)
    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    return url


async def run(url: str, places: int, queries: int) -> None:
    engine = create_async_engine(url, pool_size=1)
    try:
        org = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(text("SELECT setseed(0.42)"))
            await conn.execute(
                text("INSERT INTO organisations (id, slug, name) VALUES (:id, 'bench', 'Bench')"),
                {"id": org},
            )
            started = time.perf_counter()
            await conn.execute(
                text(GENERATE),
                {"org": org, "n": places, "west": WEST, "east": EAST, "south": SOUTH,
                 "north": NORTH},
            )  # fmt: skip
            print(f"generated {places} places in {time.perf_counter() - started:.1f} s")
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE geofences"))

        rng = random.Random(7)
        points = [
            (round(rng.uniform(WEST, EAST), 6), round(rng.uniform(SOUTH, NORTH), 6),
             rng.uniform(5, 50))
            for _ in range(queries + 200)
        ]  # fmt: skip
        async with AsyncSession(engine) as session:
            for lon, lat, acc in points[:200]:  # warm-up: caches, prepared statements
                await service.resolve(session, org, lon, lat, acc)
            timings: list[float] = []
            found = 0
            for lon, lat, acc in points[200:]:
                t0 = time.perf_counter()
                result = await service.resolve(session, org, lon, lat, acc)
                timings.append((time.perf_counter() - t0) * 1000)
                found += len(result)
            # The exact statement resolve() sends, EXPLAINed with the first point's parameters.
            driver = await driver_connection(session)
            explain = await driver.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) " + repository.RESOLVE_SQL[True],
                points[0][0],
                points[0][1],
                org,
                20.0,
                service.now(),
            )
            plan = "\n".join(str(row[0]) for row in explain)
        print(
            f"resolve over {places} places, {queries} sequential calls: "
            f"p50 {statistics.median(timings):.2f} ms, p90 {percentile(timings, 90):.2f} ms, "
            f"p99 {percentile(timings, 99):.2f} ms, max {max(timings):.2f} ms; "
            f"{found / queries:.2f} places per answer"
        )
        print(plan)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--places", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    args = parser.parse_args()
    url = prepare_database()
    try:
        asyncio.run(run(url, args.places, args.queries))
    finally:
        default_cluster().drop_database(DATABASE)


if __name__ == "__main__":
    main()
