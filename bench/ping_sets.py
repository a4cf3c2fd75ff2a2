"""CPU per single fix of the 202 path, in one process: queued in groups, evaluated in sets.

    uv run python -m bench.ping_sets [--quick] [--dense] [--devices 1000] [--rounds 12]
                                     [--set 500] [--group 24] [--no-hooks] [--loop] [--statements]
                                     [--explain] [--profile OUT.txt]

What a single fix costs besides HTTP, on the bench city, with nothing else running in the
process: each round, every one of `--devices` devices (none of them used by the other bench
scenarios) sends the next fix of its track. The fixes are queued as the 202 path queues them
(`service.enqueue_ping_batches`, `--group` requests per statement, each its own transaction, as
`app/presence/acks.py` groups them), then evaluated as the evaluator does
(`service.evaluate_queued` with the app's event hooks, sets of up to `--set` subjects, one
transaction each) until the queue is empty. Per round and phase it reports this process's CPU
(our code and asyncpg's client side) and the bench cluster's (every PostgreSQL process, from
/proc) per fix, and the evaluation's elapsed time per fix (`eval_wall_ms`: one evaluator's
latency, which bounds one slot's rate); the medians of the rounds after the first (which creates
the subjects' rows) are the figures to read. Fix times follow the tracks (recent, in order), so
the engine sees what it sees under `pings_single`: walks, rides and drives past places, enters
and exits.

`--dense`: on the dense map of `bench.pings_async` (towns shrunk: ~2.6 places per track point,
more events per fix). `--no-hooks`: the sets evaluated without the event pipeline's hooks
(rules, decisions, outbox, webhooks), so that a pair of runs shows what the events' hooks
cost. `--statements`: the bench cluster restarted with `pg_stat_statements` (`track = all`, as
`bench.pg_profile`) for this run; the statements of the rounds after the first are reported per
fix (execution time, calls, rows, WAL bytes, buffers; nested statements apart), with the
cluster's commits, tuples and WAL per fix, and written to
bench/results/profiles/pg-ping-sets-<map>-<time>.txt.

`--loop`: the queue evaluated by the evaluator's own loop (`app.presence.evaluator.run_evaluator`,
no gather delay: its slot, its sets of `--set` subjects, a session each) rather than by calling
`service.evaluate_queued` set after set; `sets` then counts the loop's sets (its metric).

`--explain`: the plans (EXPLAIN ANALYZE through auto_explain, nested statements included) of
the last round's statements that took longer than 5 ms are written to stderr. `--profile`:
the evaluation of the rounds after the first under cProfile (by own and by cumulative time;
its overhead inflates small functions).
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

import asyncpg

from bench.city import City
from bench.db import Dataset, bench_cluster_cpu_s, ping_events, queued, run_on_city
from bench.geofence_resolve import percentile
from bench.pg_profile import SETTINGS as PG_STATEMENTS
from bench.pg_profile import STATEMENTS
from bench.pings_async import dense_scale
from bench.profile import OUT

logger = logging.getLogger("bench")


async def _loop_blocks(out: list[float]) -> None:
    """Record how long each wake-up of a 1 ms sleep came late: the event loop held by others."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        out.append((time.perf_counter() - t - 0.001) * 1000)


async def _run_loop(
    args: argparse.Namespace, settings: Any, engine: Any, dsn: str, hook: Any
) -> tuple[int, int]:
    """`--loop`: the queue evaluated by the evaluator's own loop (`run_evaluator`: its slot,
    its sets, a session each) until it is empty; returns (sets, events)."""
    from app.core.metrics import PING_EVAL_SET
    from app.presence import evaluator

    loop_settings = settings.model_copy(
        update={
            "ping_evaluator_delay_ms": 0,
            "ping_evaluator_poll_s": 0.05,
            "ping_evaluator_max_subjects": args.set,
        }
    )
    before = _histogram_count(PING_EVAL_SET)
    events0 = await ping_events(dsn)
    stop = asyncio.Event()
    task = asyncio.create_task(
        evaluator.run_evaluator(
            loop_settings, engine, stop, on_events=None if args.no_hooks else hook
        )
    )
    await asyncio.sleep(0)
    evaluator.nudge()
    while await queued(dsn):
        await asyncio.sleep(0.02)
    stop.set()
    await task
    return _histogram_count(PING_EVAL_SET) - before, await ping_events(dsn) - events0


def _histogram_count(histogram: Any) -> int:
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return int(sample.value)
    return 0


async def measure(args: argparse.Namespace, dataset: Dataset, city: City) -> dict[str, Any]:
    from sqlalchemy import event

    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker
    from app.core.heap import settle_heap
    from app.events import service as events_service
    from app.main import register_event_hooks
    from app.presence import service
    from app.presence.models import SubjectKind

    settings = Settings(database_url=dataset.url, log_level="WARNING", push_allow_loopback=True)
    register_event_hooks()
    settle_heap()  # as an API process does once started (app/core/heap.py)
    hook = events_service.presence_hook(settings)
    engine = create_engine(settings, dataset.url)
    if args.explain:

        @event.listens_for(engine.sync_engine, "connect")
        def _explain(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for sql in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 5",
                "SET auto_explain.log_analyze = on",
                "SET auto_explain.log_buffers = on",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_level = notice",
            ):
                cur.execute(sql)
            cur.close()
            dbapi_conn.driver_connection.add_log_listener(
                lambda _c, msg: print(msg.message, file=sys.stderr)
            )

    sessions = create_sessionmaker(engine)
    # devices far from the ones bench.run and the probes use (no state of theirs)
    first = city.config.devices // 2
    devices = [first + d for d in range(args.devices)]
    tracks = {d: city.track(d, args.rounds) for d in devices}
    subjects = [
        service.Subject(SubjectKind.device, city.device_id(d), city.organisation_id)
        for d in devices
    ]
    profiler: Any = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    span = max(t[-1].seconds for t in tracks.values())
    base = datetime.now(UTC) - timedelta(seconds=span + 30)
    rounds: list[dict[str, float]] = []
    statements: list[Any] = []
    counters: dict[str, float] = {}
    if args.statements:
        await _sql(dataset.dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        for r in range(args.rounds):
            if args.statements and r == 1:
                await _sql(dataset.dsn, "SELECT pg_stat_statements_reset()")
                c0 = await _counters(dataset.dsn)
            requests = []
            for d, subject in zip(devices, subjects, strict=True):
                f = tracks[d][r]
                requests.append(
                    service.BatchRequest(
                        subject,
                        [
                            service.PingInput(
                                uuid.uuid4().hex,
                                f.lon,
                                f.lat,
                                base + timedelta(seconds=f.seconds),
                                f.accuracy_m,
                                f.speed_mps,
                                None,
                            )
                        ],
                        True,
                    )
                )
            # the /proc walk of bench_cluster_cpu_s outside this process's measured windows
            pg0 = bench_cluster_cpu_s()
            cpu0 = time.process_time()
            for i in range(0, len(requests), args.group):
                async with sessions() as session:
                    await service.enqueue_ping_batches(
                        session, settings, requests[i : i + args.group], autocommit=True
                    )
                    await session.commit()
            queued_api = time.process_time() - cpu0
            pg1 = bench_cluster_cpu_s()
            if profiler is not None and r > 0:
                profiler.enable()
            cpu1 = time.process_time()
            wall1 = time.perf_counter()
            sets = events = 0
            blocks: list[float] = []
            lag = asyncio.create_task(_loop_blocks(blocks))
            if args.loop:
                sets, events = await _run_loop(args, settings, engine, dataset.dsn, hook)
            while not args.loop:
                async with sessions() as session:
                    result = await service.evaluate_queued(
                        session, settings, args.set, on_events=None if args.no_hooks else hook
                    )
                    await session.commit()
                if not result.subjects:
                    break
                sets += 1
                events += len(result.events)
            eval_api = time.process_time() - cpu1
            eval_wall = time.perf_counter() - wall1
            lag.cancel()
            if profiler is not None and r > 0:
                profiler.disable()
            pg2 = bench_cluster_cpu_s()
            n = len(requests)
            row = {
                "round": r + 1,
                "fixes": n,
                "sets": sets,
                "events": events,
                "queue_api_ms": round(queued_api / n * 1000, 4),
                "queue_pg_ms": round((pg1 - pg0) / n * 1000, 4),
                "eval_api_ms": round(eval_api / n * 1000, 4),
                "eval_pg_ms": round((pg2 - pg1) / n * 1000, 4),
                # the evaluation's elapsed time: one evaluator's (one slot's) latency per fix,
                # what bounds its rate (1 / this) however many cores are idle
                "eval_wall_ms": round(eval_wall / n * 1000, 4),
                # the longest stretches for which the evaluation held the event loop (what a
                # 202 answered by the same process waits at worst), ms
                "loop_block_max_ms": round(max(blocks, default=0.0), 1),
                "loop_block_p90_ms": round(percentile(blocks, 90), 1) if blocks else 0.0,
            }
            rounds.append(row)
            print(json.dumps(row), flush=True)
        if args.statements and args.rounds > 1:
            c1 = await _counters(dataset.dsn)
            counters = {k: c1[k] - c0[k] for k in c0}
            statements = await _sql(dataset.dsn, STATEMENTS)
    finally:
        await engine.dispose()
        if args.statements:
            await _sql(dataset.dsn, "DROP EXTENSION IF EXISTS pg_stat_statements")
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_callers(25)  # who calls the costliest functions
        Path(args.profile).write_text(out.getvalue())
    measured = rounds[1:] or rounds
    keys = ("queue_api_ms", "queue_pg_ms", "eval_api_ms", "eval_pg_ms", "eval_wall_ms")
    medians = {k: round(statistics.median(x[k] for x in measured), 4) for k in keys}
    medians["total_api_ms"] = round(medians["queue_api_ms"] + medians["eval_api_ms"], 4)
    medians["total_pg_ms"] = round(medians["queue_pg_ms"] + medians["eval_pg_ms"], 4)
    if statements:
        fixes = int(sum(x["fixes"] for x in measured))
        text = _statements_report(args, medians, fixes, counters, statements)
        OUT.mkdir(parents=True, exist_ok=True)
        stem = f"pg-ping-sets-{'dense' if args.dense else 'default'}"
        path = OUT / f"{stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.txt"
        path.write_text(text)
        print(text)
        print(path)
    return {
        "map": "dense" if args.dense else "default",
        "hooks": not args.no_hooks,
        "devices": args.devices,
        "set": args.set,
        "group": args.group,
        "events_per_fix": round(
            sum(x["events"] for x in measured) / max(1, sum(x["fixes"] for x in measured)), 3
        ),
        "medians_per_fix": medians,
        "loop_block_max_ms": max(x["loop_block_max_ms"] for x in measured),
        "rounds": rounds,
    }


async def _sql(dsn: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _counters(dsn: str) -> dict[str, float]:
    (db,) = await _sql(
        dsn,
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, "
        "(SELECT sum(n_tup_hot_upd) FROM pg_stat_user_tables) AS tup_hot_updated, "
        "w.wal_records, w.wal_fpi, w.wal_bytes "
        "FROM pg_stat_database, pg_stat_wal w WHERE datname = current_database()",
    )
    return {k: float(v or 0) for k, v in dict(db).items()}


def _statements_report(
    args: argparse.Namespace,
    medians: dict[str, float],
    fixes: int,
    counters: dict[str, float],
    statements: list[Any],
) -> str:
    lines = [
        f"# PostgreSQL per single fix of the 202 path (bench.ping_sets, "
        f"{'dense' if args.dense else 'default'} map, hooks {'off' if args.no_hooks else 'on'})",
        "",
        f"{fixes} fixes (rounds 2-{args.rounds} of {args.devices} devices), queued in groups "
        f"of {args.group}, evaluated in sets of up to {args.set}; load average at the end: "
        f"{[round(x, 2) for x in os.getloadavg()]}",
        f"CPU per fix (medians of the rounds, with pg_stat_statements on): {json.dumps(medians)}",
        "",
        "## per fix",
        "",
    ]
    lines += [f"{v / fixes:10.2f}  {k}" for k, v in counters.items()]
    lines += [
        "",
        "## statements, by execution time (per fix; top = sent by a client, nested = inside a "
        "function or a trigger, its time also in its caller's)",
        "",
        "| level | ms/fix | calls/fix | rows/call | WAL B/fix | blks hit/fix | dirtied/fix "
        "| statement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in statements[:60]:
        if r["total_exec_time"] / fixes < 0.0005:
            continue
        lines.append(
            f"| {'top' if r['toplevel'] else 'nested'} | {r['total_exec_time'] / fixes:.4f} | "
            f"{r['calls'] / fixes:.3f} | {r['rows'] / max(1, r['calls']):.1f} | "
            f"{float(r['wal_bytes']) / fixes:.0f} | {r['shared_blks_hit'] / fixes:.1f} | "
            f"{r['shared_blks_dirtied'] / fixes:.2f} | `{r['query'][:150]}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ping_sets", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5k geofences, 2k devices")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--set", type=int, default=500, help="subjects per evaluated set")
    parser.add_argument("--group", type=int, default=24, help="requests per queued group")
    parser.add_argument("--dense", action="store_true", help="the dense map (bench.pings_async)")
    parser.add_argument("--dense-scale", type=float, default=None, help="with --dense: its scale")
    parser.add_argument("--no-hooks", action="store_true", help="evaluate without the hooks")
    parser.add_argument(
        "--loop", action="store_true", help="evaluate with the evaluator's loop (run_evaluator)"
    )
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements per fix")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--profile", default=None, help="write a pyinstrument profile here")
    args = parser.parse_args(argv)
    return run_on_city(
        measure,
        args,
        quick=args.quick,
        town_scale=(args.dense_scale or dense_scale(5_000 if args.quick else 100_000))
        if args.dense
        else None,
        cluster_conf=PG_STATEMENTS if args.statements else "",
    )


if __name__ == "__main__":
    sys.exit(main())
