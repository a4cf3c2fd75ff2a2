"""Where a scenario's PostgreSQL CPU goes: statements (pg_stat_statements) and processes.

    uv run python -m bench.pg_profile pings_single [--quick] [--seconds 15] [--workers 2]

Provisions (or reuses) the bench dataset, restarts the bench cluster with `pg_stat_statements`
(`track = all`: statements inside the ping functions are counted too, and nested in their
caller's time), starts `hereabouts serve` as `bench.run` does, warms up, then runs `wrk` on
the scenario's request file and waits until the queue of fixes answered 202 is evaluated and
the cluster is idle. Writes bench/results/profiles/pg-<scenario>-<time>.txt:

- CPU per ping stored, by PostgreSQL process kind (client backends, WAL writer, autovacuum,
  checkpointer, ...: from /proc, so it is CPU, not wall time);
- per statement: calls, execution time (wall, inside the backend: parse/plan excluded),
  rows, WAL bytes, buffers, each per ping stored, top-level and nested apart;
- commits and WAL per ping stored (pg_stat_database, pg_stat_wal).

The cluster's managed settings are written back without the extension and it is stopped at
the end (the extension dropped from the database), so the next `bench.run` measures a cluster
without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.db import bench_cluster, drain_queue, fresh_city
from bench.load import run_wrk, write_requests
from bench.profile import OUT, profile_tokens, requests_for
from bench.servers import _children, free_port, product_server

logger = logging.getLogger("bench")

# added to the cluster's managed settings for this run only (EmbeddedCluster.extra_conf)
SETTINGS = """shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 2000
"""
EXPLAIN = """session_preload_libraries = 'auto_explain'
auto_explain.log_min_duration = {ms}
auto_explain.log_analyze = on
auto_explain.log_buffers = on
auto_explain.log_nested_statements = on
"""


def _stat(pid: int) -> tuple[int, int] | None:
    """(own utime + stime, reaped children's cutime + cstime) in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _kind(pid: int) -> str:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "gone"
    if not title.startswith("postgres: "):
        return "postmaster"
    rest = title[len("postgres: ") :]
    if "127.0.0.1(" in rest or "[local]" in rest:
        return "client backends"
    return rest.split(" ")[0] if not rest.startswith("autovacuum") else "autovacuum"


def process_cpu(postmaster: int) -> dict[int, tuple[str, int, int]]:
    """pid → (kind, own ticks, reaped children's ticks) for the postmaster and its children."""
    out: dict[int, tuple[str, int, int]] = {}
    for pid in [postmaster, *_children(postmaster)]:
        st = _stat(pid)
        if st is not None:
            out[pid] = (_kind(pid), *st)
    return out


def cpu_by_kind(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> dict[str, float]:
    """CPU seconds per process kind between two snapshots; processes that exited meanwhile
    (their CPU is in the postmaster's reaped-children ticks) are "exited processes"."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid, (kind, own, reaped) in after.items():
        own0, reaped0 = (before[pid][1], before[pid][2]) if pid in before else (0, 0)
        out[kind] = out.get(kind, 0.0) + (own - own0) / ticks
        if kind == "postmaster":
            out["exited processes"] = (reaped - reaped0) / ticks
    return out


STATEMENTS = """
SELECT toplevel, calls, total_exec_time, rows, wal_bytes, shared_blks_hit, shared_blks_read,
       shared_blks_dirtied, shared_blks_written, regexp_replace(query, '\\s+', ' ', 'g') AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
"""


async def _counters(dsn: str) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        db = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, sessions, "
            "(SELECT sum(n_tup_hot_upd) FROM pg_stat_user_tables) AS tup_hot_updated "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        wal = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
        pings = await conn.fetchval("SELECT count(*) FROM pings")
        queued = await conn.fetchval("SELECT count(*) FROM ping_queue")
    finally:
        await conn.close()
    assert db is not None
    assert wal is not None
    return {
        **dict(db),
        **{k: float(v) for k, v in dict(wal).items()},
        "pings": pings,
        "queued": queued,
    }


async def _sql(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _idle(postmaster: int, timeout_s: float = 30.0) -> None:
    """Until the cluster uses under 5 % of a core (autovacuum and the writers done)."""
    started = time.monotonic()
    last = sum(t[1] for t in process_cpu(postmaster).values())
    while time.monotonic() - started < timeout_s:
        time.sleep(0.5)
        now = sum(t[1] for t in process_cpu(postmaster).values())
        if now - last <= 0.025 * os.sysconf("SC_CLK_TCK"):
            return
        last = now


def report(
    args: argparse.Namespace,
    wrk: dict[str, Any],
    kinds: dict[str, float],
    counters: dict[str, float],
    statements: list[asyncpg.Record],
) -> str:
    pings = max(1, int(counters["pings"]))
    total = sum(kinds.values())
    lines = [
        f"# PostgreSQL CPU of {args.scenario} (bench.pg_profile)",
        "",
        f"wrk: {json.dumps({k: wrk.get(k) for k in ('rps', 'requests', 'p50_ms', 'p99_ms')})}",
        f"load average at the end: {[round(x, 2) for x in os.getloadavg()]}",
        f"pings stored: {pings}; PostgreSQL CPU {total:.2f} s = {total / pings * 1000:.3f} ms "
        "per ping (with pg_stat_statements on, which costs a little itself)",
        "",
        "## CPU per ping stored, by process kind (ms)",
        "",
    ]
    lines += [
        f"{s / pings * 1000:8.3f}  {k}"
        for k, s in sorted(kinds.items(), key=lambda kv: -kv[1])
        if s > 0
    ]
    lines += ["", "## per ping stored", ""]
    for key in (
        "xact_commit",
        "xact_rollback",
        "tup_inserted",
        "tup_updated",
        "tup_deleted",
        "tup_hot_updated",
        "sessions",
        "wal_records",
        "wal_fpi",
        "wal_bytes",
    ):
        lines.append(f"{counters[key] / pings:10.4f}  {key} ({counters[key]:.0f})")
    lines += [
        "",
        "## statements, by execution time (ms per ping stored; top = sent by a client, "
        "nested = inside a function, its time also in its caller's)",
        "",
        "| level | ms/ping | calls/ping | rows/call | WAL B/ping | blks hit/ping | dirtied/ping "
        "| statement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in statements[: args.top]:
        if r["total_exec_time"] / pings < 0.0005:
            continue
        lines.append(
            f"| {'top' if r['toplevel'] else 'nested'} | {r['total_exec_time'] / pings:.4f} | "
            f"{r['calls'] / pings:.3f} | {r['rows'] / max(1, r['calls']):.1f} | "
            f"{float(r['wal_bytes']) / pings:.0f} | {r['shared_blks_hit'] / pings:.1f} | "
            f"{r['shared_blks_dirtied'] / pings:.2f} | `{r['query'][:160]}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_profile", description=__doc__)
    parser.add_argument("scenario", help="pings_single or pings_batch100")
    parser.add_argument("--quick", action="store_true", help="5k geofences, 2k devices")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--devices", type=int, default=1000, help="devices sending")
    parser.add_argument("--top", type=int, default=40, help="statements listed")
    parser.add_argument(
        "--explain-ms",
        type=int,
        default=0,
        help="also log EXPLAIN ANALYZE (auto_explain, nested statements) of statements slower "
        "than this, into <profile>-plans.txt (its timing inflates the CPU figures)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    dataset, city = fresh_city(args.quick)
    cluster = bench_cluster()
    cluster.extra_conf = SETTINGS
    if args.explain_ms:
        cluster.extra_conf += EXPLAIN.format(ms=args.explain_ms)
    cluster.stop()
    cluster.ensure_running()
    cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dataset.database)
    # the run's and the warm-up's own devices, the run's file long enough not to wrap: replayed
    # for the same devices, fixes are older than those devices' last ones and are evaluated as
    # late fixes, not walks (bench.run.DevicePool)
    tokens, warm_tokens = profile_tokens(city, args.scenario, args.devices, args.seconds)
    reqs = requests_for(args.scenario, city, tokens)
    warm_reqs = requests_for(args.scenario, city, warm_tokens) if warm_tokens else reqs
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"pg-{args.scenario}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    work = OUT.parent.parent.parent / ".data" / "bench-work"
    req_file = write_requests(work / f"pg-profile-{args.scenario}.tsv", reqs)
    warm_file = write_requests(work / f"pg-profile-{args.scenario}-warmup.tsv", warm_reqs)
    server = product_server(dataset.url, free_port(offset=3), args.workers, work / "pg-profile.log")
    server.start(timeout_s=120)
    try:
        run_wrk(server.url, warm_file, duration_s=3, connections=16, run_tag=stem + "w")
        asyncio.run(drain_queue(dataset.dsn))
        postmaster = cluster.postmaster_pid()
        assert postmaster is not None
        _idle(postmaster)
        asyncio.run(_sql(dataset.dsn, "SELECT pg_stat_statements_reset()"))
        c0 = asyncio.run(_counters(dataset.dsn))
        p0 = process_cpu(postmaster)
        log_start = cluster.log_file.stat().st_size
        wrk = run_wrk(
            server.url,
            req_file,
            duration_s=args.seconds,
            connections=args.connections,
            run_tag=stem,
        )
        asyncio.run(drain_queue(dataset.dsn))
        _idle(postmaster)
        p1 = process_cpu(postmaster)
        c1 = asyncio.run(_counters(dataset.dsn))
        statements = asyncio.run(_sql(dataset.dsn, STATEMENTS))
        if args.explain_ms:
            with cluster.log_file.open("rb") as log:
                log.seek(log_start)
                plans = log.read().decode(errors="replace")
    finally:
        server.stop()
        cluster.psql("DROP EXTENSION IF EXISTS pg_stat_statements", dataset.database)
        cluster.stop()
        cluster.extra_conf = ""
        cluster.ensure_running()  # rewrites the managed settings without the extension
        cluster.stop()
    delta = {k: c1[k] - c0[k] for k in c0}
    text = report(args, wrk, cpu_by_kind(p0, p1), delta, statements)
    path = OUT / f"{stem}.txt"
    path.write_text(text)
    if args.explain_ms:
        (OUT / f"{stem}-plans.txt").write_text(plans)
    print(text)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
