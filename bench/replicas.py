"""API replicas and several delivery workers against one PostGIS at once.

    uv run python -m bench.replicas [--seconds 20] [--quick]

Issue 11's "2 API processes + 3 workers" run, on the bench cluster (one PostgreSQL):

1. One API process (`hereabouts serve --workers 1`) takes single pings from `wrk` alone: the
   one-process figure.
2. Two API processes (A and B, one uvicorn worker each, different devices) take single pings
   from two `wrk` at once.
3. The same again while `bench.push_fanout` drains 6,000 notifications through three
   `hereabouts worker` processes to the loopback fake push service, in a scratch database
   (`hereabouts_bench_push`) on the same cluster (push_fanout then also runs its pywebpush
   comparison, so the machine is fully loaded).

Reports each process's requests/s and CPU per request, the total against the one-process figure,
the push rate under that load and `outbox_rows_sent_twice` (must be 0: every notification sent
once with three workers claiming concurrently). Writes bench/results/<date>-replicas.{json,md}.
On 2 cores the second process mostly adds the idle half of the machine; on more cores this is
the shape that scales (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.db import bench_cluster, fresh_city
from bench.load import run_wrk, write_requests
from bench.run import SIZING_RPS, DevicePool, devices_for
from bench.servers import Server, free_port, product_server

logger = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"
PUSH_DB = "hereabouts_bench_push"


def _wrk(server: Server, reqs: Path, seconds: int, connections: int, tag: str) -> dict[str, Any]:
    cpu0 = server.cpu_s()
    result = run_wrk(server.url, reqs, duration_s=seconds, connections=connections, run_tag=tag)
    result["server_cpu_ms_per_req"] = round(
        (server.cpu_s() - cpu0) / max(1, result["requests"]) * 1000, 3
    )
    return result


def _push(url: str, out: Path) -> dict[str, Any]:
    """bench.push_fanout with three worker processes on `url`; its JSON figures."""
    cmd = [sys.executable, "-m", "bench.push_fanout", "--workers", "0", "--processes", "3"]
    cmd += ["--fake", "fast", "--database-url", url, "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"push_fanout failed: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32, help="per API process")
    parser.add_argument("--quick", action="store_true", help="5k geofences, 2k devices")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    dataset, city = fresh_city(args.quick)
    config = dataset.config
    cluster = bench_cluster()
    cluster.ensure_database(PUSH_DB)
    push_url = cluster.url(PUSH_DB)
    work = Path(__file__).parent.parent / ".data" / "bench-work"
    # every run its own devices, its file sized not to wrap: a replayed fix is older than its
    # device's last one, a late fix to the engine, not a walk (bench.run.DevicePool)
    devices = DevicePool(None, city)

    def fresh(name: str, seconds: float) -> Path:
        toks = devices.take(devices_for(seconds * SIZING_RPS, 40))
        reqs = scenarios.single_ping_requests(city, len(toks), 40, toks)
        return write_requests(work / f"replicas-{name}.tsv", reqs)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    a = product_server(dataset.url, free_port(offset=4), 1, work / "replica-a.log")
    b = product_server(dataset.url, free_port(offset=6), 1, work / "replica-b.log")
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {"geofences": config.geofences, "devices": config.devices},
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        a.start(timeout_s=120)
        b.start(timeout_s=120)
        for server, name in ((a, "warm-a"), (b, "warm-b")):  # warm both up
            run_wrk(
                server.url, fresh(name, 3), duration_s=3, connections=8, run_tag="replicas-warm"
            )
        alone = _wrk(
            a, fresh("alone", args.seconds), args.seconds, args.connections * 2, "replicas-alone"
        )
        logger.info("one process: %s req/s", alone["rps"])
        fa, fb = fresh("a", args.seconds), fresh("b", args.seconds)
        with ThreadPoolExecutor(2) as pool:
            both = [
                f.result()
                for f in (
                    pool.submit(_wrk, a, fa, args.seconds, args.connections, "replicas-a"),
                    pool.submit(_wrk, b, fb, args.seconds, args.connections, "replicas-b"),
                )
            ]
        fa2, fb2 = fresh("a2", args.seconds), fresh("b2", args.seconds)
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(3) as pool:
            push = pool.submit(_push, push_url, Path(tmp) / "push.json")
            loaded = [
                f.result()
                for f in (
                    pool.submit(_wrk, a, fa2, args.seconds, args.connections, "replicas-a2"),
                    pool.submit(_wrk, b, fb2, args.seconds, args.connections, "replicas-b2"),
                )
            ]
            pushed = push.result()
        report["one_process"] = alone
        report["two_processes"] = {"a": both[0], "b": both[1]}
        report["two_processes_with_push_drain"] = {"a": loaded[0], "b": loaded[1]}
        total = both[0]["rps"] + both[1]["rps"]
        report["two_processes_total_rps"] = round(total, 1)
        report["scaling"] = round(total / max(1.0, alone["rps"]), 2)
        report["push_with_three_workers"] = {
            k: pushed.get(k)
            for k in (
                "pushes",
                "worker_processes",
                "hereabouts_per_s",
                "hereabouts_outbox",
                "fake_push_service_saw",
                "load_average",
            )
        }
    finally:
        a.stop()
        b.stop()
        cluster.stop()
    sent_twice = report["push_with_three_workers"]["hereabouts_outbox"]["outbox_rows_sent_twice"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stamp}-replicas.json").write_text(json.dumps(report, indent=2))
    md = [
        f"# API replicas + 3 delivery workers — {report['date']}",
        "",
        f"{report['cores']} cores, load average at start {report['load_average_at_start']}; "
        f"{config.geofences:,} geofences, {config.devices:,} devices; one PostgreSQL.",
        "",
        "| run | req/s | p50 / p99 ms | API CPU ms/req |",
        "|---|---|---|---|",
        f"| one API process, {args.connections * 2} conns | {alone['rps']:,.0f} | "
        f"{alone['p50_ms']:.0f} / {alone['p99_ms']:.0f} | {alone['server_cpu_ms_per_req']} |",
    ]
    rows = [("A", "", both[0]), ("B", "", both[1])]
    rows += [("A", " + push drain", loaded[0]), ("B", " + push drain", loaded[1])]
    for name, extra, r in rows:
        md.append(
            f"| process {name} of two{extra}, {args.connections} conns | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | {r['server_cpu_ms_per_req']} |"
        )
    md += [
        "",
        f"Two processes together: {total:,.0f} req/s = {report['scaling']}× one process; "
        f"with the push drain running: {loaded[0]['rps'] + loaded[1]['rps']:,.0f} req/s.",
        f"Push drain meanwhile, 3 `hereabouts worker` processes: "
        f"{pushed['hereabouts_per_s']:,} pushes/s, {pushed['pushes']:,} pushes, "
        f"sent twice: {sent_twice}.",
    ]
    (RESULTS / f"{stamp}-replicas.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 1 if sent_twice else 0


if __name__ == "__main__":
    sys.exit(main())
