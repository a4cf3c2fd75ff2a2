"""The bench's own PostGIS: an embedded cluster under .data/bench-pg, one database per dataset.

A dataset (seed + sizes + generator version) is loaded once with COPY and kept: the next run with
the same key only applies new migrations. `bench_meta` marks a completed load, so an interrupted
load is redone rather than half-used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from bench.city import (
    DEVICE_COLUMNS,
    GEOFENCE_COLUMNS,
    STAFF_COLUMNS,
    STAFF_PASSWORD,
    City,
    CityConfig,
)

logger = logging.getLogger("bench")

BENCH_PG_PORT = int(os.environ.get("HEREABOUTS_BENCH_PG_PORT", "54355"))
# indexes rebuilt after the bulk load (much faster than maintaining them row by row)
BULK_INDEXES = {
    "ix_geofences_geom": "CREATE INDEX ix_geofences_geom ON geofences USING gist (geom)",
    "ix_geofences_geog": "CREATE INDEX ix_geofences_geog ON geofences USING gist (geog)",
    "ix_geofences_tags": "CREATE INDEX ix_geofences_tags ON geofences USING gin (tags)",
}


def bench_cluster(port: int | None = None) -> EmbeddedCluster:
    return EmbeddedCluster(
        data_dir=PROJECT_ROOT / ".data" / "bench-pg",
        port=port or int(os.environ.get("HEREABOUTS_EMBEDDED_PORT", BENCH_PG_PORT)),
    )


@dataclass
class Dataset:
    config: CityConfig
    url: str  # postgresql+asyncpg://... for the product (SQLAlchemy)
    dsn: str  # postgresql://... for asyncpg
    load_seconds: float | None  # None when the cached load was reused
    database: str


def migrate(url: str) -> None:
    from alembic import command

    from app.core.ops import alembic_config

    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


async def _set_geometry_codec(conn: asyncpg.Connection) -> None:
    # PostGIS's binary send/receive format for geometry is EWKB: pass our bytes straight through
    await conn.set_type_codec(
        "geometry",
        schema="public",
        encoder=lambda b: b,
        decoder=lambda b: b,
        format="binary",
    )


async def is_loaded(dsn: str, key: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.bench_meta') IS NOT NULL")
        if not exists:
            return False
        return bool(await conn.fetchval("SELECT count(*) FROM bench_meta WHERE key = $1", key))
    finally:
        await conn.close()


async def load(dsn: str, city: City) -> float:
    """Truncate and COPY the city into a migrated database; return the seconds it took."""
    from app.core.security import hash_password

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await _set_geometry_codec(conn)
        await conn.execute("DROP TABLE IF EXISTS bench_meta")
        await conn.execute("TRUNCATE organisations CASCADE")
        for name in BULK_INDEXES:
            await conn.execute(f"DROP INDEX IF EXISTS {name}")
        await conn.execute(
            "INSERT INTO organisations (id, slug, name) VALUES ($1, $2, $3)",
            city.organisation_id,
            city.config.organisation_slug,
            "Bench City Council",
        )
        password_hash = hash_password(STAFF_PASSWORD)
        await conn.copy_records_to_table(
            "staff_users", records=city.staff_records(password_hash), columns=STAFF_COLUMNS
        )
        await conn.copy_records_to_table(
            "devices", records=city.device_records(), columns=DEVICE_COLUMNS
        )
        await conn.copy_records_to_table(
            "geofences", records=city.geofence_records(), columns=GEOFENCE_COLUMNS
        )
        for sql in BULK_INDEXES.values():
            await conn.execute(sql)
        await conn.execute("ANALYZE")
        await conn.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, loaded_at timestamptz)")
        await conn.execute("INSERT INTO bench_meta VALUES ($1, now())", city.config.key)
    finally:
        await conn.close()
    return time.perf_counter() - started


LOADED_TABLES = {
    "organisations",
    "staff_users",
    "devices",
    "geofences",
    "alembic_version",
    "bench_meta",
    "spatial_ref_sys",
}


async def reset_activity(dsn: str) -> list[str]:
    """Empty what earlier runs wrote (pings, events, check-ins, outbox ...), keep the city.

    Plain TRUNCATE (no CASCADE): if a product table ever references one of these from the
    loaded side, this fails loudly instead of wiping the city.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        tables = [r["tablename"] for r in rows if r["tablename"] not in LOADED_TABLES]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
        await conn.execute("UPDATE devices SET last_seen_at = NULL WHERE last_seen_at IS NOT NULL")
        if "device_settings" in tables:
            # background location is off until a resident opts in (pings are 409 without it):
            # every bench device has opted in, as PUT /v1/me/background-location would record
            await conn.execute(
                "INSERT INTO device_settings (device_id, background_location) "
                "SELECT id, true FROM devices"
            )
        # The UPDATE leaves up to one dead row per device and the INSERT a table with no
        # statistics: without this, autovacuum and autoanalyze start during the first
        # scenarios and show up in their latency tails.
        await conn.execute("VACUUM (ANALYZE) devices, device_settings")
    finally:
        await conn.close()
    return tables


def provision(config: CityConfig, cluster: EmbeddedCluster | None = None) -> Dataset:
    """Start the bench cluster, create + migrate the dataset's database, load it unless cached."""
    cluster = cluster or bench_cluster()
    cluster.ensure_running()
    database = f"bench_{config.key}"
    cluster.ensure_database(database)
    url = cluster.url(database)
    dsn = cluster.url(database, driver="postgresql")
    migrate(url)
    seconds: float | None = None
    if not asyncio.run(is_loaded(dsn, config.key)):
        logger.info("loading city %s (COPY) ...", config.key)
        seconds = asyncio.run(load(dsn, City(config)))
        logger.info("loaded in %.1f s", seconds)
    return Dataset(config=config, url=url, dsn=dsn, load_seconds=seconds, database=database)


def fresh_city(quick: bool, town_scale: float | None = None) -> tuple[Dataset, City]:
    """The default city (or the quick one), provisioned, with last run's activity cleared.

    For the single-scenario tools (profile, soak, replicas); `bench.run` sizes its own.
    `town_scale`: the towns shrunk to this share of their radius (the dense map of
    `bench.pings_async`).
    """
    config = (
        CityConfig(seed=42, geofences=5_000, devices=2_000)
        if quick
        else CityConfig(seed=42, geofences=100_000, devices=100_000)
    )
    if town_scale is not None:
        config = replace(config, town_scale=town_scale)
    dataset = provision(config)
    asyncio.run(reset_activity(dataset.dsn))
    return dataset, City(config)


def run_on_city(
    measure: Callable[[Any, Dataset, City], Coroutine[Any, Any, dict[str, Any]]],
    args: Any,
    *,
    quick: bool,
    town_scale: float | None = None,
    cluster_conf: str = "",
) -> int:
    """The in-process benches' `main`: the bench city (loaded once, cached), `measure` on it in
    its own event loop (migrations run theirs), the bench cluster stopped after, and the result
    without its per-round rows printed as one JSON line. `cluster_conf`: settings added to the
    bench cluster's for this run only (it is restarted with them, and without them after)."""
    import json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cluster = bench_cluster()
    try:
        dataset, city = fresh_city(quick, town_scale)
        if cluster_conf:  # after provisioning, whose own start would reload without them
            cluster.extra_conf = cluster_conf
            cluster.stop()
            cluster.ensure_running()
        result = asyncio.run(measure(args, dataset, city))
    finally:
        cluster.stop()
        if cluster_conf:
            cluster.extra_conf = ""
            cluster.ensure_running()  # rewrites the managed settings without them
            cluster.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}))
    return 0


async def queued(dsn: str) -> int:
    """Fixes answered 202 and not yet evaluated (`ping_queue`)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ping_queue"))
    finally:
        await conn.close()


async def ping_events(dsn: str) -> int:
    """The events pings have caused so far (suppressed candidates apart: a late fix's would-be
    events)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM presence_events"
                " WHERE source = 'ping' AND suppressed_reason IS NULL"
            )
        )
    finally:
        await conn.close()


async def drain_queue(dsn: str, timeout_s: float = 120.0) -> float:
    """Wait until the evaluators have emptied the queue; returns the seconds waited."""
    started = time.monotonic()
    while await queued(dsn) and time.monotonic() - started < timeout_s:
        await asyncio.sleep(0.05)
    return round(time.monotonic() - started, 2)


def bench_cluster_cpu_s() -> float:
    """User + system CPU seconds of the bench cluster's postmaster and its children (/proc)."""
    from bench.servers import tree_cpu_s

    pid = bench_cluster().postmaster_pid()
    assert pid is not None, "the bench cluster is not running"
    return tree_cpu_s(pid)
