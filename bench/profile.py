"""Profile one product scenario under load with py-spy (the server's workers, sampled from outside).

    uv run python -m bench.profile pings_single [--quick] [--seconds 15] [--workers 1]

Provisions (or reuses) the bench dataset, starts `hereabouts serve`, warms up, then runs `wrk`
on the scenario's request file while `py-spy record` samples every worker. Writes a speedscope
JSON and a plain-text "top functions" summary (self and total time, our code and libraries)
to bench/results/profiles/<scenario>-<time>.*. Needs py-spy (dev dependency) and wrk.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import scenarios
from bench.city import City
from bench.db import bench_cluster, fresh_city
from bench.load import Req, run_wrk, write_requests
from bench.servers import _children, free_port, product_server

logger = logging.getLogger("bench")
OUT = Path(__file__).parent / "results" / "profiles"


def requests_for(name: str, city: City, tokens: list[str]) -> list[Req]:
    if name == "resolve":
        return scenarios.resolve_requests(city, 20_000, tokens)
    if name == "checkins":
        return scenarios.checkin_requests(city, 20_000, tokens)
    if name == "pings_single":
        return scenarios.single_ping_requests(city, len(tokens), 40, tokens)
    if name == "pings_batch100":
        return scenarios.batch_ping_requests(city, len(tokens), 100, tokens)
    raise SystemExit(f"unknown scenario {name}")


def profile_tokens(
    city: City, scenario: str, devices: int, seconds: int
) -> tuple[list[str], list[str]]:
    """Loaded devices' tokens for a profiled run and for its 3 s warm-up, no device in both: at
    least `devices` for the run, and enough that its file does not wrap in `seconds` at
    bench.run's sizing rate (when the city has that many)."""
    from bench.run import SIZING_BATCH_RPS, SIZING_RPS, DevicePool, devices_for

    pool = DevicePool(None, city)
    if not scenario.startswith("pings"):
        return pool.take(devices), []
    batch = scenario == "pings_batch100"
    per = 1 if batch else 40
    rps = SIZING_BATCH_RPS if batch else SIZING_RPS
    w = devices_for(3 * rps, per)
    n = min(max(devices, devices_for(seconds * rps, per)), max(1, pool.limit - w))
    return pool.take(n), pool.take(w)


def ping_group_sizes(url: str) -> dict[str, float]:
    """Requests per ping group, from one worker's /metrics (count, sum, mean)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        for key in ("count", "sum"):
            if line.startswith(f"hereabouts_ping_group_requests_{key} "):
                out[key] = float(line.split()[1])
    if out.get("count"):
        out["mean"] = round(out["sum"] / out["count"], 2)
    return out


def summarise(speedscope: Path, top: int = 40) -> str:
    """Self and total (inclusive) sample shares per frame, from a speedscope file."""
    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    self_c: collections.Counter[int] = collections.Counter()
    total_c: collections.Counter[int] = collections.Counter()
    n = 0
    for prof in data["profiles"]:
        for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
            n += weight
            if sample:
                self_c[sample[-1]] += weight
            for f in set(sample):
                total_c[f] += weight

    def name(i: int) -> str:
        f = frames[i]
        file = f.get("file", "")
        for cut in ("site-packages/", "wt-perf/", "python3.11/"):
            if cut in file:
                file = file.split(cut, 1)[1]
        return f"{f['name']} ({file}:{f.get('line', '')})"

    lines = [f"samples: {n}", "", "## self time", ""]
    lines += [f"{c / n * 100:5.1f}%  {name(i)}" for i, c in self_c.most_common(top)]
    lines += ["", "## total time (inclusive)", ""]
    lines += [f"{c / n * 100:5.1f}%  {name(i)}" for i, c in total_c.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario")
    parser.add_argument("--quick", action="store_true", help="5k geofences, 2k devices")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--devices", type=int, default=200, help="devices sending")
    parser.add_argument("--rate", type=int, default=0, help="py-spy samples/s (default 100)")
    parser.add_argument("--no-spy", action="store_true", help="only wrk + server CPU/request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    dataset, city = fresh_city(args.quick)
    # the run's and the warm-up's own devices, the run's file long enough not to wrap: replayed
    # for the same devices, fixes are older than those devices' last ones and are evaluated as
    # late fixes, not walks (bench.run.DevicePool)
    tokens, warm_tokens = profile_tokens(city, args.scenario, args.devices, args.seconds)
    reqs = requests_for(args.scenario, city, tokens)
    warm_reqs = requests_for(args.scenario, city, warm_tokens) if warm_tokens else reqs
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"{args.scenario}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    work = OUT.parent.parent.parent / ".data" / "bench-work"
    req_file = write_requests(work / f"profile-{args.scenario}.tsv", reqs)
    warm_file = write_requests(work / f"profile-{args.scenario}-warmup.tsv", warm_reqs)
    server = product_server(dataset.url, free_port(offset=2), args.workers, work / "profile.log")
    server.start(timeout_s=120)
    result: dict[str, Any] = {}
    try:
        run_wrk(server.url, warm_file, duration_s=3, connections=8, run_tag=stem + "w")
        assert server.proc is not None
        workers = _children(server.proc.pid) or [server.proc.pid]
        # uvicorn --workers: the master's children are the workers (plus a resource tracker)
        spy = [
            subprocess.Popen(
                [
                    sys.executable.replace("python", "py-spy")
                    if Path(sys.executable.replace("python", "py-spy")).exists()
                    else "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(args.seconds),
                    "--format",
                    "speedscope",
                    "--rate",
                    str(args.rate or 100),
                    "--nonblocking",
                    "--output",
                    str(OUT / f"{stem}-{pid}.speedscope.json"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in ([] if args.no_spy else workers)
        ]
        time.sleep(0.5)
        cpu0 = server.cpu_s()
        result = run_wrk(
            server.url,
            req_file,
            duration_s=args.seconds,
            connections=args.connections,
            run_tag=stem,
        )
        result["ping_groups"] = ping_group_sizes(server.url)
        result["server_cpu_ms_per_req"] = round(
            (server.cpu_s() - cpu0) / max(1, result["requests"]) * 1000, 3
        )
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        for p in spy:
            p.wait(timeout=60)
    finally:
        server.stop()
        bench_cluster().stop()
    keys = ("rps", "p50_ms", "p99_ms", "errors", "server_cpu_ms_per_req", "load_average")
    logger.info("wrk: %s", {k: result.get(k) for k in keys})
    texts = []
    for f in sorted(OUT.glob(f"{stem}-*.speedscope.json")):
        texts.append(f"# {f.name}\n\nwrk: {json.dumps(result)}\n\n" + summarise(f))
    if not texts:  # --no-spy
        print(json.dumps(result))
        return 0
    summary = OUT / f"{stem}.txt"
    summary.write_text("\n".join(texts))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
