"""Quick local figure for the ping batch path (not the full load benchmark).

    HEREABOUTS_TEST_PG_PORT=54344 uv run python -m bench.pings_quick [--geofences 10000]

Uses the test cluster manager (a throwaway database), loads N geofences spread over a
20 km x 20 km town (circles 15-60 m, trigger 50 m, a few polygons), then times
`service.ingest_ping_batch` (validate, store, resolve, presence, events; one transaction each)
for 100-ping batches and 1-ping batches of devices walking through the town.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.accounts import service as accounts_service
from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT, Environment, Settings
from app.core.ops import alembic_config
from app.presence import service
from app.presence.models import SubjectKind

LON0, LAT0 = -1.5491, 53.8008
M_LAT = 111_320.0
M_LON = M_LAT * math.cos(math.radians(LAT0))


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main(n_geofences: int, batches: int) -> None:
    port = int(os.environ.get("HEREABOUTS_TEST_PG_PORT", "54339"))
    cluster = EmbeddedCluster(data_dir=PROJECT_ROOT / ".data" / "test-pg", port=port)
    cluster.ensure_running()
    name = "hereabouts_bench_pings"
    cluster.drop_database(name)
    cluster.ensure_database(name)
    url = cluster.url(name)
    from alembic import command

    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    await asyncio.to_thread(command.upgrade, cfg, "head")
    settings = Settings(environment=Environment.test, database_url=url, log_level="WARNING")
    engine = create_async_engine(url, pool_size=4)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as s, s.begin():
        org = await accounts_service.create_organisation(s, "bench", "Bench")
        org_id = org.id
        await s.execute(
            text(
                """
INSERT INTO geofences (id, organisation_id, name, category, shape_kind, radius_m, geom,
                       trigger_distance_m, dwell_s)
SELECT gen_random_uuid(), :org, 'place ' || i, 'library', 'circle', r,
       ST_Buffer(ST_SetSRID(ST_MakePoint(:lon0 + x / :mlon, :lat0 + y / :mlat), 4326)::geography,
                 r, 'quad_segs=8')::geometry, 50, 300
FROM (SELECT i, random() * 20000 AS x, random() * 20000 AS y, 15 + random() * 45 AS r
      FROM generate_series(1, :n) AS i) t
"""
            ),
            {
                "org": org_id,
                "n": n_geofences,
                "lon0": LON0,
                "lat0": LAT0,
                "mlon": M_LON,
                "mlat": M_LAT,
            },
        )
        devices: list[uuid.UUID] = []
        for _ in range(batches * 2 + 3):
            d, _tok = await accounts_service.register_device(s, "bench", "web")
            devices.append(d.id)
        http_tokens: list[str] = []
        for _ in range(batches + 3):
            d, tok = await accounts_service.register_device(s, "bench", "web")
            await service.set_background_location(s, d.id, True)
            http_tokens.append(tok)
    async with engine.connect() as c:
        await c.execute(text("ANALYZE geofences"))
        await c.commit()

    rng = random.Random(1)
    now = datetime.now(UTC)

    def track(n: int, start: datetime) -> list[service.PingInput]:
        x, y = rng.uniform(0, 20000), rng.uniform(0, 20000)
        heading = rng.uniform(0, 2 * math.pi)
        out = []
        for i in range(n):
            x += 14 * math.cos(heading)
            y += 14 * math.sin(heading)
            out.append(
                service.PingInput(
                    f"p{i}",
                    LON0 + (x + rng.uniform(-10, 10)) / M_LON,
                    LAT0 + (y + rng.uniform(-10, 10)) / M_LAT,
                    start + timedelta(seconds=10 * i),
                    rng.uniform(5, 25),
                )
            )
        return out

    stmt_ms: dict[str, list[float]] = {}
    started: list[float] = []

    def before(*args: object) -> None:
        started.append(time.perf_counter())

    def after(*args: object) -> None:
        sql = " ".join(str(args[2]).split()[:3])[:40]
        stmt_ms.setdefault(sql, []).append((time.perf_counter() - started.pop()) * 1000)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)

    async def run(size: int, subjects: list[uuid.UUID]) -> tuple[list[float], int]:
        timings, events = [], 0
        for dev in subjects:
            pings = track(size, now - timedelta(hours=3))
            subject = service.Subject(SubjectKind.device, dev, org_id)
            t0 = time.perf_counter()
            async with maker() as s, s.begin():
                result = await service.ingest_ping_batch(s, settings, subject, pings, now=now)
            timings.append((time.perf_counter() - t0) * 1000)
            events += len(result.events)
        return timings, events

    await run(100, devices[:3])  # warm up
    stmt_ms.clear()
    big, ev = await run(100, devices[3 : 3 + batches])
    print("per statement, 100-ping batches (median ms):")
    for sql, ms in sorted(stmt_ms.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(ms):7.2f}  x{len(ms):<4d} {sql}")
    stmt_ms.clear()
    small, _ = await run(1, devices[3 + batches :])
    print("per statement, 1-ping batches (median ms):")
    for sql, ms in sorted(stmt_ms.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(ms):7.2f}  x{len(ms):<4d} {sql}")
    event.remove(engine.sync_engine, "before_cursor_execute", before)
    event.remove(engine.sync_engine, "after_cursor_execute", after)

    # the same 100-ping batches through the HTTP stack in-process (auth, pydantic, JSON)
    import httpx

    from app.main import create_app

    application = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=application)
    http: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for i, tok in enumerate(http_tokens):
            body = {
                "pings": [
                    {
                        "id": p.id,
                        "lon": p.lon,
                        "lat": p.lat,
                        "accuracy_m": p.accuracy_m,
                        "recorded_at": p.recorded_at.isoformat(),
                    }
                    for p in track(100, now - timedelta(hours=3))
                ]
            }
            t0 = time.perf_counter()
            r = await client.post(
                "/v1/pings", json=body, headers={"Authorization": f"Bearer {tok}"}
            )
            if i >= 3:
                http.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    print(f"geofences={n_geofences} cpu_count={os.cpu_count()}")
    print(
        f"100-ping POST /v1/pings in-process: n={len(http)} "
        f"median={statistics.median(http):.1f} ms p95={_pct(http, 0.95):.1f} ms"
    )
    print(
        f"100-ping batch: n={len(big)} median={statistics.median(big):.1f} ms "
        f"p95={_pct(big, 0.95):.1f} ms  -> {100 * 1000 / statistics.median(big):.0f} points/s "
        f"per connection; events={ev}"
    )
    print(
        f"1-ping batch:   n={len(small)} median={statistics.median(small):.2f} ms "
        f"p95={_pct(small, 0.95):.2f} ms"
    )
    await engine.dispose()
    if not os.environ.get("BENCH_KEEP"):
        cluster.drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--geofences", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.geofences, args.batches))
