"""Batched pings on one PostGIS node against a Citus coordinator + 2 workers (docs/scaling.md).

    uv run python -m bench.citus --single-port 54339 --citus-ports 54351,54352,54353
    uv run python -m bench.citus ... --rebalance     # also move shards while pings flow
    uv run python -m bench.citus ... --citus-dir bench-citus   # nodes under .data/bench-citus*

Each setup gets a fresh migrated database with one organisation, a grid of places and walking
devices; `--concurrency` tasks send 100-fix batches through the ping service (one transaction
per batch, as a request would) for `--seconds`. Reported per setup: pings/s, database CPU per
ping for every node (from /proc, the server processes of that cluster only), client CPU per
ping, and on Citus the single- vs multi-shard statement counts (`citus_stat_counters`). With
`--rebalance`, Citus drains one worker and rebalances back while the pings flow, and checks
that no batch failed and every fix sent is stored.

`--mode async` drives the 202 path instead: single-fix requests queued as the API queues them
(`enqueue_ping_batch`, one request per transaction), `--concurrency` at a time for `--seconds`,
then the app's evaluator (`run_evaluator`) drains the queue. Reported: requests/s while queuing,
database CPU per fix for queuing and for evaluating (every node), the drain time, where
`ping_queue` lives, and whether every device's events equal those of a twin device that was
sent the same fixes synchronously afterwards (ground truth). With `--rebalance` the evaluator
runs while the fixes are queued and the shards move, and the counts of fixes acknowledged,
evaluated and stored must agree.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from geoalchemy2 import Geography, Geometry
from sqlalchemy import cast, func, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.accounts import service as accounts_service
from app.accounts.models import Device
from app.core.citus import CitusCluster
from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT, Environment, Settings
from app.core.db import commit_retrying, create_engine
from app.core.metrics import PING_EVAL_SET
from app.core.ops import alembic_config
from app.core.security import hash_token
from app.geofences.models import Geofence
from app.presence import service as presence_service
from app.presence.evaluator import nudge, run_evaluator
from app.presence.models import SubjectKind
from app.presence.service import PingInput, Subject, ingest_ping_batch
from bench.servers import tree_cpu_s

ORIGIN = (-1.5491, 53.8008)
M_PER_DEG = 111_320.0
BATCH = 100


def _lonlat(east_m: float, north_m: float) -> tuple[float, float]:
    lat = ORIGIN[1] + north_m / M_PER_DEG
    return ORIGIN[0] + east_m / (M_PER_DEG * math.cos(math.radians(ORIGIN[1]))), lat


def _node_cpu_s(node: EmbeddedCluster) -> float:
    """CPU seconds used so far by the node's postmaster and its children (this cluster only)."""
    pid = node.postmaster_pid()
    return 0.0 if pid is None else tree_cpu_s(pid)


@dataclass
class Result:
    setup: str
    pings: int = 0
    batches: int = 0
    failures: int = 0
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    node_cpu_s: list[float] = field(default_factory=list)
    single_shard: int = 0
    multi_shard: int = 0
    stored: int = 0
    events: int = 0
    rebalance: str = ""

    def summary(self) -> dict[str, Any]:
        per_ping = [round(c / max(self.pings, 1) * 1e6) for c in self.node_cpu_s]
        shard_total = self.single_shard + self.multi_shard
        return {
            "setup": self.setup,
            "pings_per_s": round(self.pings / self.seconds),
            "batches": self.batches,
            "failures": self.failures,
            "db_cpu_us_per_ping_per_node": per_ping,
            "db_cpu_us_per_ping": sum(per_ping),
            "client_cpu_us_per_ping": round(self.client_cpu_s / max(self.pings, 1) * 1e6),
            "single_shard_statements": self.single_shard,
            "multi_shard_statements": self.multi_shard,
            "single_shard_share": round(self.single_shard / shard_total, 3)
            if shard_total
            else None,
            "stored_pings": self.stored,
            "events": self.events,
            "rebalance": self.rebalance,
        }


async def _load(engine: AsyncEngine, devices: int, places: int) -> list[Subject]:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as db:
        org = await accounts_service.create_organisation(db, f"bench-{secrets.token_hex(3)}", "B")
        side = int(math.sqrt(places))
        for i in range(places):
            lon, lat = _lonlat((i % side) * 150.0, (i // side) * 150.0)
            centre = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
            db.add(
                Geofence(
                    organisation_id=org.id,
                    name=f"place {i}",
                    category="library",
                    shape_kind="circle",
                    radius_m=30.0,
                    center=centre,
                    geom=cast(func.ST_Buffer(cast(centre, Geography), 30.0), Geometry),
                    trigger_distance_m=40.0,
                    dwell_s=60,
                )
            )
        subjects = []
        for _ in range(devices):
            device = Device(organisation_id=org.id, token_hash=hash_token(secrets.token_hex(16)))
            db.add(device)
            await db.flush()
            subjects.append(Subject(SubjectKind.device, device.id, org.id))
        await db.commit()
    return subjects


def _evaluated_so_far() -> float:
    """Fixes this process's evaluators have evaluated (the evaluator's own set-size metric)."""
    for metric in PING_EVAL_SET.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                return float(sample.value)
    return 0.0


def _fix(subject_no: int, n: int, start: datetime) -> PingInput:
    """The subject's n-th fix: `_batch`'s walk (one fix every 10 s along its row of places),
    but back and forth instead of jumping from the row's end to its start: a 3 km jump in 10 s
    is an implausible one, whose suppressed candidate events the 100-fix synchronous batches of
    the twins and the single fixes do not always record alike (docs/scaling.md)."""
    m = (n * 14.0) % 6000.0
    lon, lat = _lonlat(m if m <= 3000.0 else 6000.0 - m, (subject_no % 20) * 150.0)
    return PingInput(f"s{n}", lon, lat, start + timedelta(seconds=10 * n), 8.0)


def _batch(subject_no: int, batch_no: int, start: datetime) -> list[PingInput]:
    """A walk at 1.4 m/s, one fix every 10 s, east along the subject's own row of places."""
    fixes = []
    for k in range(BATCH):
        n = batch_no * BATCH + k
        lon, lat = _lonlat((n * 14.0) % 3000.0, (subject_no % 20) * 150.0)
        fixes.append(
            PingInput(f"b{batch_no}-{k}", lon, lat, start + timedelta(seconds=10 * n), 8.0)
        )
    return fixes


async def _drive(
    url: str, setup: str, nodes: list[EmbeddedCluster], args: argparse.Namespace
) -> Result:
    settings = Settings(
        environment=Environment.test,
        database_url=url,
        log_json=False,
        db_pool_size=args.concurrency + 2,
    )
    # the service's own engine (its connect-time settings matter on Citus: app/core/db.py)
    engine = create_engine(settings, url)
    subjects = await _load(engine, args.devices, args.places)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    result = Result(setup)
    # 72 batches of 1,000 s per subject before a fix is in the future, none past retention
    start = datetime.now(UTC) - timedelta(hours=20)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(subjects)):
        queue.put_nowait(i)
    batch_no = [0] * len(subjects)
    accepted = [0]  # warm-up included: what the table must hold at the end
    deadline = 0.0

    async def worker() -> None:
        while time.monotonic() < deadline:
            i = await queue.get()
            try:
                async with sessions() as db:
                    # as the app's ping groups do: a deadlock (40P01) or serialization failure
                    # runs the batch again from its start (app.core.db.commit_retrying)
                    out = await commit_retrying(
                        db,
                        functools.partial(
                            ingest_ping_batch,
                            db,
                            settings,
                            subjects[i],
                            _batch(i, batch_no[i], start),
                        ),
                        what="bench batch",
                    )
                result.pings += out.accepted
                accepted[0] += out.accepted
                result.batches += 1
                batch_no[i] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                result.failures += 1
                print(f"batch failed: {exc!r}"[:300])
            finally:
                queue.put_nowait(i)

    async def counters() -> tuple[int, int]:
        if len(nodes) == 1:
            return 0, 0
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT query_execution_single_shard, query_execution_multi_shard "
                        "FROM citus_stat_counters WHERE name = current_database()"
                    )
                )
            ).one()
        return int(row[0]), int(row[1])

    # warm-up (plans, partitions, caches), then the measured run
    deadline = time.monotonic() + 3
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    result.pings = result.batches = result.failures = 0
    single0, multi0 = await counters()
    cpu0 = [_node_cpu_s(n) for n in nodes]
    client0 = time.process_time()
    t0 = time.monotonic()
    rebalancing = args.rebalance and len(nodes) > 1
    # with --rebalance the pings flow until the shards are back, then `--seconds` more
    deadline = math.inf if rebalancing else t0 + args.seconds
    tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    if rebalancing:
        try:
            result.rebalance = await _rebalance(engine, nodes[-1].port)
        finally:
            deadline = time.monotonic() + args.seconds
    await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - t0
    result.client_cpu_s = time.process_time() - client0
    result.node_cpu_s = [_node_cpu_s(n) - c for n, c in zip(nodes, cpu0, strict=True)]
    single1, multi1 = await counters()
    result.single_shard, result.multi_shard = single1 - single0, multi1 - multi0
    async with engine.connect() as conn:
        result.stored = int((await conn.execute(text("SELECT count(*) FROM pings"))).scalar_one())
        result.events = int(
            (await conn.execute(text("SELECT count(*) FROM presence_events"))).scalar_one()
        )
    expected = accepted[0]
    if result.stored != expected:
        result.rebalance += f" LOST: stored {result.stored} of {expected} sent"
    await engine.dispose()
    return result


@dataclass
class AsyncResult:
    setup: str
    queue_placement: str = ""
    requests: int = 0
    failures: int = 0
    send_seconds: float = 0.0
    drain_seconds: float = 0.0
    send_cpu_s: list[float] = field(default_factory=list)
    drain_cpu_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    acknowledged: int = 0  # fixes answered 202 (warm-up included)
    evaluated: int = 0  # fixes the evaluator took from the queue (its metric; warm-up included)
    stored: int = 0
    left_in_queue: int = 0
    events: int = 0
    twin_events: int = 0
    devices_differing: int = 0
    difference_examples: list[str] = field(default_factory=list)
    loadavg: str = ""
    rebalance: str = ""

    def summary(self) -> dict[str, Any]:
        n = max(self.requests, 1)
        send = [round(c / n * 1e6) for c in self.send_cpu_s]
        drain = [round(c / n * 1e6) for c in self.drain_cpu_s]
        return {
            "setup": self.setup,
            "mode": "async (202 single fixes)",
            "ping_queue": self.queue_placement,
            "requests_per_s": round(self.requests / max(self.send_seconds, 1e-9)),
            "failures": self.failures,
            "queue_db_cpu_us_per_fix_per_node": send,
            "evaluate_db_cpu_us_per_fix_per_node": drain,
            "db_cpu_us_per_fix_per_node": [a + b for a, b in zip(send, drain, strict=True)],
            "db_cpu_us_per_fix": sum(send) + sum(drain),
            "client_cpu_us_per_fix": round(self.client_cpu_s / n * 1e6),
            "drain_s": round(self.drain_seconds, 2),
            "acknowledged": self.acknowledged,
            "evaluated": self.evaluated,
            "stored_pings": self.stored,
            "left_in_queue": self.left_in_queue,
            "events": self.events,
            "twin_events": self.twin_events,
            "devices_whose_events_differ_from_their_twin": self.devices_differing,
            "differences_first": self.difference_examples,
            "loadavg": self.loadavg,
            "rebalance": self.rebalance,
        }


# every event of the async devices against their twins' (sent the same fixes synchronously):
# the devices whose lists differ
_TWIN_DIFF_SQL = """
WITH pairs AS (
    SELECT * FROM unnest(CAST(:a AS uuid[]), CAST(:t AS uuid[])) AS p(dev, twin)
), mine AS (
    SELECT p.dev, e.type, e.geofence_id, e.ping_id, e.occurred_at, e.suppressed_reason
    FROM presence_events e JOIN pairs p ON e.device_id = p.dev
), theirs AS (
    SELECT p.dev, e.type, e.geofence_id, e.ping_id, e.occurred_at, e.suppressed_reason
    FROM presence_events e JOIN pairs p ON e.device_id = p.twin
), diff AS (
    (SELECT * FROM mine EXCEPT ALL SELECT * FROM theirs)
    UNION ALL
    (SELECT * FROM theirs EXCEPT ALL SELECT * FROM mine)
)
SELECT count(DISTINCT dev), (array_agg(concat_ws(' ', dev, type, ping_id, occurred_at,
       suppressed_reason) ORDER BY dev, occurred_at))[1:6] FROM diff
"""


async def _drive_async(
    url: str, setup: str, nodes: list[EmbeddedCluster], args: argparse.Namespace
) -> AsyncResult:
    """Single fixes answered 202, then drained by the app's evaluator (see the module doc)."""
    settings = Settings(
        environment=Environment.test,
        database_url=url,
        log_json=False,
        db_pool_size=args.concurrency + 4,
    )
    engine = create_engine(settings, url)
    subjects = await _load(engine, args.devices * 2, args.places)
    subjects, twins = subjects[: args.devices], subjects[args.devices :]
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as db:  # a device's 202 needs background location on
        for s in subjects:
            await presence_service.set_background_location(db, s.id, True)
        await db.commit()
    result = AsyncResult(setup)
    async with engine.connect() as conn:
        if len(nodes) > 1:
            result.queue_placement = str(
                (
                    await conn.execute(
                        text(
                            "SELECT citus_table_type || CASE WHEN citus_table_type = "
                            "'distributed' THEN ' by ' || distribution_column ELSE '' END "
                            "FROM citus_tables WHERE table_name = 'ping_queue'::regclass"
                        )
                    )
                ).scalar_one()
            )
        else:
            result.queue_placement = "local"
    start = datetime.now(UTC) - timedelta(hours=20)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(subjects)):
        queue.put_nowait(i)
    sent = [0] * len(subjects)  # fixes acknowledged per device: 0 .. sent[i]-1
    deadline = 0.0

    async def sender() -> None:
        while time.monotonic() < deadline:
            i = await queue.get()
            try:
                async with sessions() as db:
                    ack = await presence_service.enqueue_ping_batch(
                        db, settings, subjects[i], [_fix(i, sent[i], start)]
                    )
                    await db.commit()
                nudge()
                if len(ack.accepted) != 1:
                    raise RuntimeError(f"not accepted: {ack}")
                sent[i] += 1
                result.requests += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                result.failures += 1
                print(f"request failed: {exc!r}"[:300])
                if result.failures > 100:
                    raise
            finally:
                queue.put_nowait(i)

    async def queued() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM ping_queue"))).scalar_one())

    stop = asyncio.Event()
    rebalancing = args.rebalance and len(nodes) > 1

    async def evaluate() -> None:
        await run_evaluator(settings, engine, stop)

    evaluated0 = _evaluated_so_far()
    # warm-up: queue and evaluate a little (plans, partitions, caches)
    deadline = time.monotonic() + 3
    await asyncio.gather(*(sender() for _ in range(args.concurrency)))
    warm = asyncio.create_task(evaluate())
    while await queued():
        await asyncio.sleep(0.2)
    stop.set()
    await warm
    stop = asyncio.Event()
    result.requests = result.failures = 0

    evaluator: asyncio.Task[None] | None = None
    if rebalancing:  # the evaluator works while fixes are queued and shards move
        evaluator = asyncio.create_task(evaluate())
    cpu0 = [_node_cpu_s(n) for n in nodes]
    client0 = time.process_time()
    t0 = time.monotonic()
    deadline = math.inf if rebalancing else t0 + args.seconds
    tasks = [asyncio.create_task(sender()) for _ in range(args.concurrency)]
    if rebalancing:
        try:
            result.rebalance = await _rebalance(engine, nodes[-1].port)
        finally:
            deadline = time.monotonic() + args.seconds
    await asyncio.gather(*tasks)
    t1 = time.monotonic()
    cpu1 = [_node_cpu_s(n) for n in nodes]
    result.send_seconds = t1 - t0
    if evaluator is None:
        evaluator = asyncio.create_task(evaluate())
    while await queued():
        await asyncio.sleep(0.05)
    result.drain_seconds = time.monotonic() - t1
    cpu2 = [_node_cpu_s(n) for n in nodes]
    result.client_cpu_s = time.process_time() - client0
    stop.set()
    await evaluator
    result.send_cpu_s = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    result.drain_cpu_s = [b - a for a, b in zip(cpu1, cpu2, strict=True)]
    with open("/proc/loadavg") as fh:
        result.loadavg = " ".join(fh.read().split()[:3])
    result.acknowledged = sum(sent)

    # ground truth: each device's twin is sent the same fixes synchronously, in 100-fix batches
    for i, twin in enumerate(twins):
        fixes = [_fix(i, n, start) for n in range(sent[i])]
        for k in range(0, len(fixes), BATCH):
            async with sessions() as db:
                await commit_retrying(
                    db,
                    functools.partial(ingest_ping_batch, db, settings, twin, fixes[k : k + BATCH]),
                    what="bench twin batch",
                )
    async with engine.connect() as conn:

        async def count(sql: str, **params: Any) -> int:
            return int((await conn.execute(text(sql), params)).scalar_one())

        mine = [s.id for s in subjects]
        result.stored = await count("SELECT count(*) FROM pings WHERE subject_id = ANY(:s)", s=mine)
        result.left_in_queue = await count("SELECT count(*) FROM ping_queue")
        result.events = await count(
            "SELECT count(*) FROM presence_events WHERE device_id = ANY(:s)", s=mine
        )
        result.twin_events = await count(
            "SELECT count(*) FROM presence_events WHERE device_id = ANY(:s)",
            s=[t.id for t in twins],
        )
        differing = (
            await conn.execute(text(_TWIN_DIFF_SQL), {"a": mine, "t": [t.id for t in twins]})
        ).one()
        result.devices_differing = int(differing[0])
        result.difference_examples = list(differing[1] or [])
    result.evaluated = round(_evaluated_so_far() - evaluated0)
    if len({result.acknowledged, result.evaluated, result.stored}) > 1 or result.left_in_queue:
        result.rebalance += (
            f" LOST OR TWICE: {result.acknowledged} acknowledged, {result.evaluated} "
            f"evaluated, {result.stored} stored, {result.left_in_queue} still queued"
        )
    await engine.dispose()
    return result


async def _rebalance(engine: AsyncEngine, worker_port: int) -> str:
    """Drain one worker, then give it its shards back, while the pings flow."""
    t0 = time.monotonic()
    async with engine.connect() as conn:
        # each step commits: a shard move runs in its own transactions and must see the last
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        # a drain or rebalance takes minutes: the service engine's statement timeout is 15 s
        await conn.execute(text("SET statement_timeout = 0"))
        await conn.execute(
            text(
                "SELECT citus_drain_node('127.0.0.1', :p, shard_transfer_mode => 'force_logical')"
            ),
            {"p": worker_port},
        )
        moved_away = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM citus_shards WHERE nodeport = :p "
                    "AND citus_table_type = 'distributed'"
                ),
                {"p": worker_port},
            )
        ).scalar_one()
        await drop_orphaned_shards(conn)  # the drained copies, before shards move back
        await conn.execute(
            text("SELECT citus_set_node_property('127.0.0.1', :p, 'shouldhaveshards', true)"),
            {"p": worker_port},
        )
        await conn.execute(
            text("SELECT rebalance_table_shards(shard_transfer_mode => 'force_logical')")
        )
        back = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM citus_shards WHERE nodeport = :p "
                    "AND citus_table_type = 'distributed'"
                ),
                {"p": worker_port},
            )
        ).scalar_one()
    return (
        f"drained worker {worker_port} (shards left there: {moved_away}), rebalanced back "
        f"({back} shards there) in {time.monotonic() - t0:.1f} s"
    )


async def move_one_shard_group(engine: AsyncEngine, from_port: int, to_port: int) -> str:
    """Move one co-located shard group of pings (every day partition, and the anchors' shard
    of the same hash range) from one worker to another and back, while the pings flow."""
    t0 = time.monotonic()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        shard = (
            await conn.execute(
                text(
                    "SELECT shardid FROM citus_shards WHERE table_name = 'pings'::regclass "
                    "AND nodeport = :p ORDER BY shardid LIMIT 1"
                ),
                {"p": from_port},
            )
        ).scalar_one()
        for src, dst in ((from_port, to_port), (to_port, from_port)):
            # a move leaves the source's copy behind, dropped later; a move back onto that
            # node is refused while it is there
            await drop_orphaned_shards(conn)
            await conn.execute(
                text(
                    "SELECT citus_move_shard_placement(:s, '127.0.0.1', :src, '127.0.0.1', "
                    ":dst, shard_transfer_mode => 'force_logical')"
                ),
                {"s": shard, "src": src, "dst": dst},
            )
    return f"moved shard group of {shard} there and back in {time.monotonic() - t0:.1f} s"


async def drop_orphaned_shards(conn: AsyncConnection, timeout_s: float = 120.0) -> None:
    """Drop the shard copies earlier moves left behind, waiting until none is left.

    Citus drops a moved shard's old copy later (its maintenance daemon, every 15 s), and only
    with a 1 s lock timeout: while statements keep using the old copy (pings flowing, a busy
    machine) the drop is put off again. A move onto a node that still holds such a copy fails
    ("shard move failed as the orphaned shard ... leftover from the previous move could not be
    cleaned up"), so ask for the drop until it succeeds. `conn` in autocommit mode.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        await conn.execute(text("CALL citus_cleanup_orphaned_resources()"))
        left = (await conn.execute(text("SELECT count(*) FROM pg_dist_cleanup"))).scalar_one()
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} orphaned Citus resources still not dropped")
        await asyncio.sleep(0.5)


def _fresh(cluster: EmbeddedCluster, name: str) -> str:
    cluster.drop_database(name)
    cluster.ensure_database(name)
    url = cluster.url(name)
    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single-port", type=int, default=54339)
    parser.add_argument("--citus-ports", default="54351,54352,54353")
    # the Citus nodes' data directories under .data (a separate cluster from the tests' one keeps
    # their server processes out of the CPU figures)
    parser.add_argument("--citus-dir", default="test-citus")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--places", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rebalance", action="store_true")
    parser.add_argument("--only", choices=["single", "citus"])
    parser.add_argument(
        "--mode",
        choices=["batch", "async"],
        default="batch",
        help="batch: 100-fix synchronous batches; async: single fixes answered 202, then drained",
    )
    args = parser.parse_args()
    ports = [int(p) for p in args.citus_ports.split(",")]
    data = PROJECT_ROOT / ".data"
    out = []

    async def drive(
        url: str, setup: str, nodes: list[EmbeddedCluster], args: argparse.Namespace
    ) -> Result | AsyncResult:
        if args.mode == "async":
            return await _drive_async(url, setup, nodes, args)
        return await _drive(url, setup, nodes, args)

    if args.only != "citus":
        single = EmbeddedCluster(data_dir=data / "test-pg", port=args.single_port)
        single.ensure_running()
        url = _fresh(single, "hereabouts_bench_citus")
        out.append(asyncio.run(drive(url, "1 node", [single], args)).summary())
        single.drop_database("hereabouts_bench_citus")
    if args.only != "single":
        cluster = CitusCluster(
            data_dir=data / args.citus_dir, port=ports[0], worker_ports=tuple(ports[1:])
        )
        cluster.ensure_running()
        url = _fresh(cluster, "hereabouts_bench_citus")
        out.append(
            asyncio.run(
                drive(url, "coordinator + 2 workers", [cluster, *cluster.workers], args)
            ).summary()
        )
        cluster.drop_database("hereabouts_bench_citus")
    print(json.dumps({"at": datetime.now(UTC).isoformat(), "runs": out}, indent=1))


if __name__ == "__main__":
    main()
