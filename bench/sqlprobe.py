"""PostGIS alone, no HTTP: the per-lookup cost and the batched-lookup ceiling (points/s).

These isolate the index from the web stack: the single-lookup latency shows how the GiST lookup
grows with the number of geofences, the batched figure is the ceiling any API can approach when
it looks many points up in one statement (docs/quality.md: roughly 40k points/s on 2 cores).
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from bench.baseline import LOOKUP
from bench.load import percentiles_ms

BATCHED = """
SELECT p.i, g.id
FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(lon, lat, i)
JOIN geofences g
  ON ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)) AND g.deleted_at IS NULL
"""


async def lookup_latency(dsn: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    """One connection, one lookup at a time (prepared statement): per-lookup latency."""
    conn = await asyncpg.connect(dsn)
    try:
        stmt = await conn.prepare(LOOKUP)
        for lon, lat in points[:50]:  # warm the cache and the plan
            await stmt.fetch(lon, lat)
        latencies = []
        hits = 0
        for lon, lat in points:
            t = time.perf_counter()
            hits += bool(await stmt.fetch(lon, lat))
            latencies.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return {
        "lookups": len(points),
        "hit_share": round(hits / len(points), 3),
        **percentiles_ms(latencies),
    }


async def batched_points_per_s(
    dsn: str, points: list[tuple[float, float]], batch: int = 1000
) -> dict[str, Any]:
    """One connection, `batch` points per statement: the raw lookup ceiling in points/s."""
    conn = await asyncpg.connect(dsn)
    try:
        stmt = await conn.prepare(BATCHED)
        chunks = [points[i : i + batch] for i in range(0, len(points), batch)]
        await stmt.fetch([p[0] for p in chunks[0]], [p[1] for p in chunks[0]])
        started = time.perf_counter()
        for chunk in chunks:
            await stmt.fetch([p[0] for p in chunk], [p[1] for p in chunk])
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "points": len(points),
        "batch": batch,
        "seconds": round(seconds, 3),
        "points_per_s": round(len(points) / seconds, 1),
    }
