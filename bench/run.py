"""`make bench`: provision, load the city, measure the baseline, then every product scenario.

    uv run python -m bench.run            # default sizes (100k geofences, 100k devices)
    uv run python -m bench.run --quick    # small city, short runs: proves the harness works
    uv run python -m bench.run --scale    # resolve latency as geofences grow 1k -> 1M (+ PNG)

Writes bench/results/<date>.json and .md. Every figure is absolute and as a ratio to the baseline
measured in the same run. Scenarios whose endpoint the product does not have yet are reported as
"not available"; a scenario whose probe request fails is reported with the error, never crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.config import PROJECT_ROOT
from bench import scenarios
from bench.city import STAFF_PASSWORD, City, CityConfig
from bench.db import Dataset, bench_cluster, provision, reset_activity
from bench.load import Req, open_loop, read_requests, run_wrk, write_requests
from bench.servers import (
    Server,
    add_product_options,
    baseline_server,
    evaluator_label,
    free_port,
    parse_settings,
    product_options,
    product_server,
)

logger = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"
WORK = PROJECT_ROOT / ".data" / "bench-work"


@dataclass(frozen=True)
class Profile:
    geofences: int
    devices: int
    wrk_s: int
    open_loop_s: int
    warmup_s: int
    connections: int
    ping_rate: int  # open-loop rate for single pings (QUALITY: p99 at 1,000 req/s)
    checkin_rate: int  # open-loop rate for check-ins (QUALITY: p99 at 500 req/s)
    track_devices: int
    track_fixes: int
    batch_devices: int


DEFAULT = Profile(100_000, 100_000, 20, 20, 3, 64, 1000, 500, 1000, 40, 400)
QUICK = Profile(5_000, 2_000, 5, 5, 1, 32, 200, 100, 200, 10, 50)


# -- machine and HTTP helpers ------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def probe(base_url: str, req: Req) -> tuple[int, str]:
    """Send one scenario request (placeholders filled) and return its status and body."""
    from itertools import count

    from bench.load import fill_placeholders, headers_for

    now, ids = datetime.now(UTC), count(1)
    body = fill_placeholders(req.body, "probe", ids, now) if req.body else None
    path = fill_placeholders(req.path, "probe", ids, now)
    try:
        status, data = http(
            req.method, base_url + path, body.encode() if body else None, headers_for(req)
        )
    except OSError as exc:  # timeouts included: reported as the scenario's error
        return 0, f"{type(exc).__name__}: {exc}"
    return status, data.decode(errors="replace")[:500]


def settle(base_url: str, timeout_s: float = 60.0) -> float:
    """Wait until the server answers /healthz within 0.5 s again (a saturating open-loop run
    leaves a backlog behind); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        t = time.monotonic()
        try:
            status, _ = http("GET", base_url + "/healthz")
        except OSError:
            status = 0
        if status == 200 and time.monotonic() - t < 0.5:
            break
        time.sleep(1.0)
    return round(time.monotonic() - started, 1)


def openapi_routes(base_url: str) -> set[tuple[str, str]]:
    status, data = http("GET", base_url + "/openapi.json")
    if status != 200:
        return set()
    paths = json.loads(data).get("paths", {})
    return {(m.upper(), p) for p, ops in paths.items() for m in ops}


def measure(
    server: Server,
    name: str,
    reqs: list[Req],
    profile: Profile,
    *,
    rate: int | None = None,
    run_wrk_too: bool = True,
    fixes_per_req: int = 0,
    dsn: str | None = None,
    warmup_reqs: list[Req] | None = None,
    open_loop_reqs: list[Req] | None = None,
) -> dict[str, Any]:
    """Warm up, then wrk (throughput) and optionally an open-loop run at `rate` (latency).

    `warmup_reqs`, `open_loop_reqs`: those phases' own requests (other devices: `DevicePool`),
    else `reqs` again. With `dsn`, location scenarios report `late_share`: the share of the
    pings stored in the wrk run that the engine found late (older than their device's last
    evaluated fix; 0 unless the file wrapped or its devices were used before).

    With `fixes_per_req` (location scenarios) the wrk run is also given per fix: fixes/s sent
    and API and PostgreSQL CPU per fix. For those, the CPU window starts once the warm-up's
    last requests are done and ends once the API and PostgreSQL are idle again, and (with `dsn`)
    is divided by the pings stored in it: every request the window paid for is counted, also
    those still in flight when wrk stopped (which wrk does not count), and a request answered
    as a duplicate would show as fewer pings stored.
    """
    path = write_requests(WORK / f"{name}.tsv", reqs)
    warm_path = (
        path if warmup_reqs is None else write_requests(WORK / f"{name}-warmup.tsv", warmup_reqs)
    )
    tag = f"{name}-{int(time.time())}"
    out: dict[str, Any] = {"status": "ok", "request_lines": len(reqs)}
    run_wrk(server.url, warm_path, duration_s=profile.warmup_s, connections=16, run_tag=tag + "w")
    out["rss_mb_before"] = server.rss_mb()
    if run_wrk_too:
        if fixes_per_req:
            quiesce(server)
        pings0, late0 = asyncio.run(count_pings(dsn)) if dsn and fixes_per_req else (None, 0)
        cpu0, db0, ev0 = server.cpu_s(), postgres_cpu_s(), server.companion_cpu_s()
        out["wrk"] = run_wrk(
            server.url, path, duration_s=profile.wrk_s, connections=profile.connections, run_tag=tag
        )
        if pings0 is not None:
            from bench.db import drain_queue

            # the fixes answered 202 and still queued when wrk stopped: how long they took
            out["wrk"]["drain_s"] = asyncio.run(drain_queue(dsn or ""))
        done = out["wrk"].get("requests", 0)
        if done:
            # server CPU per request (API processes only, not PostgreSQL): robust to a busy box
            api_s, db_s = server.cpu_s() - cpu0, postgres_cpu_s() - db0
            out["wrk"]["server_cpu_ms_per_req"] = round(api_s / done * 1000, 3)
            # PostgreSQL (all backends of the bench cluster; nothing else uses it meanwhile)
            out["wrk"]["db_cpu_ms_per_req"] = round(db_s / done * 1000, 3)
            if fixes_per_req:
                w = out["wrk"]
                w["fixes_per_req"] = fixes_per_req
                w["fixes"] = done * fixes_per_req
                seconds = w["duration_s"] or 1.0
                w["fixes_per_s"] = round(w["fixes"] / seconds, 1)
                w["quiesce_s"] = quiesce(server)
                api_s, db_s = server.cpu_s() - cpu0, postgres_cpu_s() - db0
                per = w["fixes"]
                if pings0 is not None:
                    pings1, late1 = asyncio.run(count_pings(dsn))
                    w["pings_stored"] = per = pings1 - pings0
                    w["late_share"] = round((late1 - late0) / max(per, 1), 4)
                    # what the path sustains, evaluation included: the fixes stored over the
                    # run plus the time its queue then took to empty (bench.pings_async's
                    # "evaluated/s with the drain")
                    w["sustained_fixes_per_s"] = round(per / (seconds + w["drain_s"]), 1)
                w["cpu_per_fix_basis"] = "pings stored" if pings0 is not None else "fixes sent"
                w["server_cpu_ms_per_fix"] = round(api_s / max(per, 1) * 1000, 4)
                if server.companion_procs:  # of which the evaluator's worker
                    ev_s = server.companion_cpu_s() - ev0
                    w["evaluator_worker_cpu_ms_per_fix"] = round(ev_s / max(per, 1) * 1000, 4)
                w["db_cpu_ms_per_fix"] = round(db_s / max(per, 1) * 1000, 4)
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
        logger.info("%s wrk: %s", name, _short(out["wrk"]))
    if rate:
        out["open_loop"] = asyncio.run(
            open_loop(
                server.url,
                open_loop_reqs if open_loop_reqs is not None else read_requests(path),
                rate=rate,
                duration_s=profile.open_loop_s,
                run_tag=tag + "o",
            )
        )
        logger.info("%s open-loop: %s", name, _short(out["open_loop"]))
        out["settle_s"] = settle(server.url)
    out["rss_mb_after"] = server.rss_mb()
    return out


def quiesce(server: Server, timeout_s: float = 30.0) -> float:
    """Wait until the API and PostgreSQL use under 10% of a core (the requests a closed-loop
    run left in flight are done); returns the seconds waited."""
    started = time.monotonic()
    last = server.cpu_s() + postgres_cpu_s()
    while time.monotonic() - started < timeout_s:
        time.sleep(0.5)
        now = server.cpu_s() + postgres_cpu_s()
        if now - last < 0.05:
            break
        last = now
    return round(time.monotonic() - started, 1)


async def count_pings(dsn: str | None) -> tuple[int, int]:
    """Rows in `pings`, and those of them evaluated as late (counted outside the CPU-measured
    window; a fix queued by a 202 is counted once evaluated)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(*) FILTER (WHERE late) FROM pings")
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the bench cluster (postmaster and every backend)."""
    from bench.servers import tree_cpu_s

    try:
        pid = int((bench_cluster().pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return tree_cpu_s(pid)


def _short(r: dict[str, Any]) -> str:
    rps = r.get("rps", r.get("achieved_rps"))
    return (
        f"{rps} req/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms max {r['max_ms']} ms "
        f"errors {r['errors']}"
    )


# -- product setup -----------------------------------------------------------------------------
# What the location scenarios' request files are sized for, so that a run does not wrap its file
# (bench/lua/replay.lua starts it again at the end): closed-loop requests per second, above the
# fastest baseline measured here (3,900 req/s) with room; batches of 100 fixes per second.
# A run that wraps anyway replays fixes older than the ones its devices sent: its `late_share`
# says so.
SIZING_RPS = 6_000
SIZING_BATCH_RPS = 400


class DevicePool:
    """The loaded devices, handed out a slice per phase (`take`): no device is in two phases.

    A request file replays recent tracks: `@T<n>@` is n seconds before the request is sent. Sent
    again for the same devices later — a warm-up's file by the run after it, one scenario's
    tracks by the next, a file that wraps — its fixes are older than the ones those devices sent
    last, and the engine evaluates them as late fixes (stored, flagged, suppressed candidates),
    not as people walking. Until 2026-12-05 every location scenario used devices 0..n, and most
    fixes of the ping scenarios after the first were late (docs/benchmarks.md). `reserved`:
    the city's last devices, kept out (the probes of bench.pings_async).
    """

    def __init__(self, server: Server | None, city: City, reserved: int = 100) -> None:
        """`server`: asked whether the loaded devices' tokens work (None: they do)."""
        self.server, self.city = server, city
        self.limit = max(1, city.config.devices - reserved)
        self.next = 0
        self.handed = 0  # devices handed out, all phases
        self.wrapped = False  # the city ran out and its first devices were handed out again
        self.source = "loaded devices (token hashes COPYed with the city)"
        if server is not None:
            _, self.source = device_tokens(server, city, 1)
        self.loaded = server is None or self.source.startswith("loaded")

    def take(self, n: int) -> list[str]:
        """Tokens of `n` devices no earlier `take` gave out (unless the city has run out:
        `wrapped`, and the runs' `late_share` shows what it cost). Devices registered with
        POST /v1/devices when the loaded ones are refused are new each time."""
        self.handed += n
        if not self.loaded:
            assert self.server is not None
            return device_tokens(self.server, self.city, n)[0]
        out = []
        for _ in range(n):
            if self.next >= self.limit:
                self.next, self.wrapped = 0, True
            out.append(self.city.device_token(self.next))
            self.next += 1
        return out


def devices_for(lines: float, per_device: int) -> int:
    """Devices a file of at least `lines` requests needs, `per_device` requests each."""
    return max(1, math.ceil(lines / per_device))


def device_tokens(server: Server, city: City, n: int) -> tuple[list[str], str]:
    """Bearer tokens for `n` loaded devices; falls back to POST /v1/devices if they are refused."""
    tokens = [city.device_token(i) for i in range(min(n, city.config.devices))]
    status, _ = http("GET", server.url + "/v1/me", headers={"Authorization": f"Bearer {tokens[0]}"})
    if status == 200:
        return tokens, "loaded devices (token hashes COPYed with the city)"
    fresh = []
    for _ in range(min(n, 200)):
        status, data = http(
            "POST", server.url + "/v1/devices", b"{}", {"Content-Type": "application/json"}
        )
        if status != 201:
            raise RuntimeError(f"POST /v1/devices answered {status}: {data[:200]!r}")
        fresh.append(json.loads(data)["token"])
    return fresh, "registered with POST /v1/devices"


def ingest_keys(server: Server, tokens: list[str]) -> list[str]:
    """One ingest key per device (Traccar Client's `id`), made with POST /v1/me/ingest-keys."""
    keys = []
    for token in tokens:
        status, data = http(
            "POST",
            server.url + "/v1/me/ingest-keys",
            b'{"label": "bench"}',
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        if status != 201:
            raise RuntimeError(f"POST /v1/me/ingest-keys answered {status}: {data[:200]!r}")
        keys.append(json.loads(data)["key"])
    return keys


def staff_token(server: Server, city: City) -> str | None:
    form = urllib.parse.urlencode({"username": city.staff_email(0), "password": STAFF_PASSWORD})
    status, data = http(
        "POST",
        server.url + "/v1/auth/token",
        form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return str(json.loads(data)["access_token"]) if status == 200 else None


def push_fanout(dataset: Dataset, quick: bool) -> dict[str, Any]:
    """Runs bench/push_fanout.py (written with the Web Push work) if it is there."""
    if not (Path(__file__).parent / "push_fanout.py").exists():
        return {"status": "not available", "reason": "bench/push_fanout.py is not in this tree"}
    out_file = WORK / "push_fanout.json"
    out_file.unlink(missing_ok=True)
    # a scratch database next to the city's: push_fanout truncates its organisations
    cluster = bench_cluster()
    cluster.ensure_database("bench_push")
    cmd = [
        sys.executable,
        "-m",
        "bench.push_fanout",
        "--database-url",
        cluster.url("bench_push"),
        "--json",
        str(out_file),
        # two sender processes: what `hereabouts serve` runs on 2 cores (2 uvicorn workers, each
        # with its in-process delivery worker)
        "--workers",
        "0",
        "--processes",
        "2",
    ]
    if quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": "bench.push_fanout timed out after 420 s"}
    if proc.returncode != 0 or not out_file.exists():
        return {"status": "error", "reason": (proc.stderr or proc.stdout)[-1500:]}
    return {"status": "ok", "result": json.loads(out_file.read_text())}


def pings_async_scenario(
    config: CityConfig, profile: Profile, args: argparse.Namespace
) -> dict[str, Any]:
    """bench/pings_async.py: single fixes answered 202 on this city and on a dense one."""
    from bench import pings_async

    try:
        return pings_async.run(
            config,
            maps=["default", "dense"],
            seconds=profile.wrk_s,
            rate=profile.ping_rate,
            workers=args.workers,
            connections=profile.connections,
            track_devices=profile.track_devices,
            track_fixes=profile.track_fixes,
            **product_options(args),  # the same product as the other scenarios
        )
    except Exception as exc:  # noqa: BLE001 - one broken scenario never loses the run
        logger.exception("pings_async failed")
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}


# -- the run -----------------------------------------------------------------------------------
def run_all(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    config = CityConfig(
        seed=args.seed,
        geofences=args.geofences or profile.geofences,
        devices=args.devices or profile.devices,
    )
    started = time.monotonic()
    dataset = provision(config)
    asyncio.run(reset_activity(dataset.dsn))
    asyncio.run(set_commit(dataset.dsn, args.commit))
    city = City(config)
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "default",
        "machine": machine(),
        "workers": args.workers,
        "dataset": {
            **asdict(config),
            "staff": config.staff,
            "towns": len(city.towns),
            "key": config.key,
            "load_seconds": dataset.load_seconds,
            "cached": dataset.load_seconds is None,
        },
        "profile": asdict(profile),
        # durable: every 2xx is on disk (production's setting); async: synchronous_commit = off
        # for the bench database, to show what durability costs on this machine's disk
        "commit": args.commit,
        # where the 202 path's fixes are evaluated (bench/servers.py: product_server)
        "evaluator": evaluator_label(args.evaluator, args.worker_nice, args.evaluator_workers),
        "settings": parse_settings(args.setting),
        "scenarios": {},
    }
    sc: dict[str, Any] = result["scenarios"]

    # 0. PostGIS alone (no HTTP): per-lookup latency and the batched ceiling, one connection
    from bench.sqlprobe import batched_points_per_s, lookup_latency

    sql_points = city.points_near_places(20_000, salt=4)
    result["postgis"] = {
        "single_lookup": asyncio.run(lookup_latency(dataset.dsn, sql_points[:3000])),
        "batched_1000": asyncio.run(batched_points_per_s(dataset.dsn, sql_points)),
    }
    logger.info("postgis: %s", result["postgis"])

    # 1. baseline
    base = baseline_server(dataset.dsn, free_port(), args.workers, WORK / "baseline.log")
    base.start()
    try:
        sc["baseline"] = measure(
            base,
            "baseline",
            scenarios.baseline_requests(city, 20_000),
            profile,
            rate=profile.ping_rate,
        )
    finally:
        base.stop()
    baseline_rps = float(sc["baseline"]["wrk"]["rps"])

    # 2. product
    if args.skip_product:
        result["product"] = "skipped (--skip-product)"
    else:
        prod = product_server(
            dataset.url,
            free_port(offset=1),
            args.workers,
            WORK / "product.log",
            **product_options(args),
        )
        prod.start(timeout_s=120)
        try:
            only = set(args.only.split(",")) if args.only else None
            run_product(prod, city, profile, sc, result, only, dsn=dataset.dsn)
        finally:
            prod.stop()
        if args.only is None or "push_fanout" in args.only.split(","):
            sc["push_fanout"] = push_fanout(dataset, args.quick)
        if args.only is None or "pings_async" in args.only.split(","):
            sc["pings_async"] = pings_async_scenario(config, profile, args)

    result["ratios"] = ratios(sc, baseline_rps)
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def run_product(
    prod: Server,
    city: City,
    profile: Profile,
    sc: dict[str, Any],
    result: dict[str, Any],
    only: set[str] | None = None,
    *,
    dsn: str | None = None,
) -> None:
    routes = openapi_routes(prod.url)
    result["product_rss_mb_idle"] = prod.rss_mb()
    pool = DevicePool(prod, city)
    # resolve and check-ins: devices of their own too (a check-in is no fix of a track)
    tokens = pool.take(profile.track_devices)
    tf = profile.track_fixes
    Phases = tuple[list[Req], list[Req] | None, list[Req] | None]

    def phases(
        build: Callable[[list[str]], list[Req]], per_device: int, rps: int, open_loop: bool = True
    ) -> Phases:
        """A location scenario's requests for wrk, its warm-up and its open loop (at
        `profile.ping_rate`), each phase its own devices, sized not to wrap at `rps`."""
        main = build(pool.take(devices_for(profile.wrk_s * rps, per_device)))
        warm = build(pool.take(devices_for(profile.warmup_s * rps, per_device)))
        if not open_loop:
            return main, warm, None
        ol_lines = profile.open_loop_s * profile.ping_rate * 1.2
        return main, warm, build(pool.take(devices_for(ol_lines, per_device)))

    def singles(toks: list[str]) -> list[Req]:
        return scenarios.single_ping_requests(city, len(toks), tf, toks)

    def batches(toks: list[str]) -> list[Req]:
        return scenarios.batch_ping_requests(city, len(toks), 100, toks)

    def overland(toks: list[str]) -> list[Req]:
        return scenarios.overland_requests(city, len(toks), 100, toks)

    def owntracks(toks: list[str]) -> list[Req]:
        return scenarios.owntracks_requests(city, len(toks), tf, toks)

    def traccar(toks: list[str]) -> list[Req]:
        return scenarios.traccar_requests(city, len(toks), tf, ingest_keys(prod, toks))

    # (name, method, route, its phases' requests (built only when the scenario runs), open-loop
    # rate)
    plan: list[tuple[str, str, str, Callable[[], Phases], int | None]] = [
        (
            "resolve",
            "GET",
            "/v1/geofences/resolve",
            lambda: (scenarios.resolve_requests(city, 20_000, tokens), None, None),
            profile.checkin_rate,
        ),
        (
            "checkins",
            "POST",
            "/v1/checkins",
            lambda: (scenarios.checkin_requests(city, 20_000, tokens), None, None),
            profile.checkin_rate,
        ),
        (
            "pings_single",
            "POST",
            "/v1/pings",
            lambda: phases(singles, tf, SIZING_RPS),
            profile.ping_rate,
        ),
        (
            "pings_batch100",
            "POST",
            "/v1/pings",
            lambda: phases(batches, 1, SIZING_BATCH_RPS, open_loop=False),
            None,
        ),
        # the GPS apps' formats with the same fixes (docs/ingest.md), in the same run
        (
            "ingest_overland",
            "POST",
            "/v1/ingest/overland",
            lambda: phases(overland, 1, SIZING_BATCH_RPS, open_loop=False),
            None,
        ),
        (
            "ingest_owntracks",
            "POST",
            "/v1/ingest/owntracks",
            lambda: phases(owntracks, tf, SIZING_RPS),
            profile.ping_rate,
        ),
        (
            "ingest_traccar",
            "POST",
            "/v1/ingest/traccar",
            lambda: phases(traccar, tf, SIZING_RPS),
            profile.ping_rate,
        ),
    ]
    mixed: dict[str, list[Req]] = {}
    for name, method, path, build, rate in plan:
        if only is not None and name not in only:
            sc[name] = {"status": "skipped", "reason": "not in --only"}
            continue
        if (method, path) not in routes:
            sc[name] = {"status": "not available", "reason": f"{method} {path} is not a route yet"}
            logger.info("%s: not available", name)
            continue
        settle(prod.url)
        try:
            reqs, warm, ol = build()
        except Exception as exc:  # noqa: BLE001 - e.g. ingest keys refused: reported
            logger.exception("%s: building its requests failed", name)
            sc[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        # the probe request: the first of the warm-up's (its fix is the warm-up's first too)
        status, body = probe(prod.url, (warm or reqs)[0])
        if not 200 <= status < 300:
            sc[name] = {"status": "error", "reason": f"probe answered {status}: {body}"}
            logger.warning("%s: probe answered %s: %s", name, status, body)
            continue
        try:
            sc[name] = measure(
                prod,
                name,
                reqs,
                profile,
                rate=rate,
                fixes_per_req=FIXES_PER_REQ.get(name, 0),
                dsn=dsn,
                warmup_reqs=warm,
                open_loop_reqs=ol,
            )
        except Exception as exc:  # noqa: BLE001 - one broken scenario never loses the run
            logger.exception("%s failed", name)
            sc[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        if name in ("resolve", "checkins", "pings_single"):
            mixed[name] = reqs
    if only is not None and "mixed" not in only:
        sc["mixed"] = {"status": "skipped", "reason": "not in --only"}
    elif mixed:
        # sized so as not to wrap at `SIZING_RPS`; the warm-up's fixes other devices'
        sc["mixed"] = measure(
            prod,
            "mixed",
            mixed_requests(mixed, profile.wrk_s * SIZING_RPS, tf, singles, pool),
            profile,
            warmup_reqs=mixed_requests(mixed, profile.warmup_s * SIZING_RPS, tf, singles, pool),
        )
    else:
        sc["mixed"] = {"status": "not available", "reason": "no product scenario is available"}
    result["devices"] = {
        "source": pool.source,
        "handed_out": pool.handed,
        "city_ran_out": pool.wrapped,
        "staff_login": staff_token(prod, city) is not None,
    }
    result["product_rss_mb_end"] = prod.rss_mb()


def mixed_requests(
    reqs: dict[str, list[Req]],
    lines: int,
    track_fixes: int,
    singles: Callable[[list[str]], list[Req]],
    pool: DevicePool,
) -> list[Req]:
    """The mixed scenario's file: lookups, check-ins and single fixes, one in six, one in six and
    four in six (of those that ran), spread evenly and deterministically. The fixes are new
    devices' and keep each device's track order (a shuffle sent a device's later fixes first:
    its earlier ones were then late). `lines`: the file's length."""
    share = {"resolve": 1, "checkins": 1, "pings_single": 4}
    parts = {k: share[k] for k in reqs}
    total = sum(parts.values())
    queues: dict[str, list[Req]] = {}
    for name, weight in parts.items():
        n = int(lines * weight / total)
        if name == "pings_single":
            queues[name] = singles(pool.take(devices_for(n, track_fixes)))[:n]
        else:
            queues[name] = (reqs[name] * (n // max(1, len(reqs[name])) + 1))[:n]
    slots = [name for name, q in queues.items() for _ in q]
    random.Random(0).shuffle(slots)
    taken = dict.fromkeys(queues, 0)
    out = []
    for name in slots:  # each kind's requests in their own order, the kinds interleaved
        out.append(queues[name][taken[name]])
        taken[name] += 1
    return out


TARGETS = {
    # scenario: (description, check(result, baseline_rps) -> bool | None)
    "pings_batch100": "points/s >= 4x baseline req/s",
    "pings_single": "req/s >= 0.8x baseline; p99 <= 25 ms at 1,000 req/s",
    "checkins": "p99 <= 25 ms at 500 req/s",
}


TARGET_RATES = {"pings_single": 1000, "checkins": 500}

# location scenarios: fixes per request (the native API and each app's format, same fixes)
FIXES_PER_REQ = {
    "pings_single": 1,
    "pings_batch100": 100,
    "ingest_overland": 100,
    "ingest_owntracks": 1,
    "ingest_traccar": 1,
}


def ratios(sc: dict[str, Any], baseline_rps: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in sc.items():
        if r.get("status") != "ok" or "wrk" not in r:
            continue
        rps = float(r["wrk"]["rps"])
        row: dict[str, Any] = {"rps": rps, "rps_ratio": round(rps / baseline_rps, 3)}
        ol = r.get("open_loop", {})
        if name in FIXES_PER_REQ:
            row["fixes_per_s"] = rps * FIXES_PER_REQ[name]
            row["fixes_ratio"] = round(rps * FIXES_PER_REQ[name] / baseline_rps, 3)
        if name == "pings_batch100":
            row["points_per_s"] = rps * 100
            row["points_ratio"] = round(rps * 100 / baseline_rps, 3)
            row["target_met"] = row["points_ratio"] >= 4
        elif name in TARGET_RATES:
            if ol.get("target_rps", 0) < TARGET_RATES[name]:
                row["target_met"] = None
                row["target_note"] = f"latency not judged: measured at {ol.get('target_rps')}/s"
            else:
                latency_ok = ol.get("errors", 1) == 0 and ol["p99_ms"] <= 25
                # single fixes answered 202: judged on what is evaluated, not only acknowledged
                sustained = r["wrk"].get("sustained_fixes_per_s")
                if sustained is not None:
                    row["sustained_ratio"] = round(sustained / baseline_rps, 3)
                speed = row.get("sustained_ratio", row["rps_ratio"])
                speed_ok = name != "pings_single" or speed >= 0.8
                row["target_met"] = latency_ok and speed_ok
        out[name] = row
    return out


def markdown(result: dict[str, Any]) -> str:
    m, d = result["machine"], result["dataset"]
    base = result["scenarios"]["baseline"]
    base_rps = float(base["wrk"]["rps"])
    lines = [
        f"# Hereabouts bench — {result['date']} ({result['mode']})",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, load average at start "
        f"{m['load_average_at_start']}. Workers: {result['workers']} per server. Commit: "
        f"{result.get('commit', 'durable')}. Ping evaluator: "
        f"{result.get('evaluator', 'embedded')}"
        + "".join(f", {k}={v}" for k, v in result.get("settings", {}).items())
        + ".",
        f"Dataset: seed {d['seed']}, {d['geofences']:,} geofences in {d['towns']} towns, "
        f"{d['devices']:,} devices, {d['staff']:,} staff"
        + (" (cached load)" if d["cached"] else f" (loaded in {d['load_seconds']:.1f} s)")
        + ".",
        f"Baseline (same run): {base_rps:,.0f} req/s closed loop.",
        "PostGIS alone (one connection, no HTTP): single lookup p50 "
        f"{result['postgis']['single_lookup']['p50_ms']} ms / p99 "
        f"{result['postgis']['single_lookup']['p99_ms']} ms; batched 1,000 points per statement "
        f"{result['postgis']['batched_1000']['points_per_s']:,.0f} points/s.",
        "",
        "| scenario | tool | rate | req/s | × baseline | p50 ms | p95 ms | p99 ms | max ms "
        "| errors | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["scenarios"].items():
        if r.get("status") != "ok":
            lines.append(
                f"| {name} | — | — | {r.get('status')} | | | | | | | "
                f"{r.get('reason', '')[:120].replace('|', '/')} |"
            )
            continue
        if name == "pings_async":
            continue  # its own table below
        if name == "push_fanout":
            lines.append(
                f"| push_fanout | bench/push_fanout.py | | see JSON | | | | | | | "
                f"`{json.dumps(r['result'])[:200]}` |"
            )
            continue
        target = TARGETS.get(name, "")
        judged = result.get("ratios", {}).get(name, {})
        met = judged.get("target_met")
        if met is not None:
            target += " — **met**" if met else " — **not met**"
        elif judged.get("target_note"):
            target += f" — {judged['target_note']}"
        for tool in ("wrk", "open_loop"):
            if tool not in r:
                continue
            t = r[tool]
            rps = float(t.get("rps", t.get("achieved_rps", 0)))
            ratio = f"{rps / base_rps:.2f}×" if tool == "wrk" else "—"
            if name == "pings_batch100" and tool == "wrk":
                ratio += f" ({rps * 100:,.0f} points/s = {rps * 100 / base_rps:.2f}×)"
            if (
                tool == "wrk"
                and t.get("sustained_fixes_per_s") is not None
                and name != "pings_batch100"
            ):
                ratio += (
                    f" (evaluated with the drain: {t['sustained_fixes_per_s']:,.0f} fixes/s = "
                    f"{t['sustained_fixes_per_s'] / base_rps:.2f}×, drain {t['drain_s']} s)"
                )
            rate = (
                "closed, {} conns".format(t["connections"])
                if tool == "wrk"
                else (f"open {t['target_rps']:.0f}/s")
            )
            lines.append(
                f"| {name} | {tool} | {rate} | {rps:,.0f} | {ratio} | {t['p50_ms']:.1f} | "
                f"{t['p95_ms']:.1f} | {t['p99_ms']:.1f} | {t['max_ms']:.1f} | {t['errors']} | "
                f"{target if tool == 'wrk' else generator_note(t)} |"
            )
    lines += per_fix_table(result)
    if "product_rss_mb_idle" in result:
        lines += [
            "",
            f"API memory (2 workers + master, RSS): {result['product_rss_mb_idle']} MiB "
            f"idle, {result.get('product_rss_mb_end')} MiB after the run.",
        ]
    pa = result["scenarios"].get("pings_async", {})
    if pa.get("status") == "ok":
        from bench import pings_async

        lines += [
            "",
            "Single fixes answered 202 (bench/pings_async.py; CPU per fix counted until the "
            "queue is evaluated):",
            "",
            pings_async.markdown(pa).rstrip(),
        ]
    lines += ["", f"Total run time: {result['total_seconds']} s."]
    return "\n".join(lines) + "\n"


def generator_note(t: dict[str, Any]) -> str:
    """The open-loop generator's own figures, to judge its percentiles by (bench/openloop.py)."""
    g = t.get("generator")
    if not g:
        return ""
    return (
        f"generator: send lag p99 {g['send_lag_p99_ms']} ms / max {g['send_lag_max_ms']} ms, "
        f"{t.get('generator_late', 0)} late, {g['queued_for_connection']} waited for one of "
        f"{g['connections']} connections, {g['cpu_ms_per_req']} ms CPU/req"
    )


def per_fix_table(result: dict[str, Any]) -> list[str]:
    """The location scenarios side by side, per fix: what each app's format costs against
    `POST /v1/pings` carrying the same fixes (closed loop, wrk)."""
    base_rps = float(result["scenarios"]["baseline"]["wrk"]["rps"])
    rows = []
    for name, per_req in FIXES_PER_REQ.items():
        r = result["scenarios"].get(name, {})
        if r.get("status") != "ok" or "fixes_per_s" not in r.get("wrk", {}):
            continue
        w = r["wrk"]
        rows.append(
            f"| {name} | {per_req} | {w['rps']:,.0f} | {w['fixes_per_s']:,.0f} | "
            f"{w['fixes_per_s'] / base_rps:.2f}× | {w['server_cpu_ms_per_fix']:.3f} | "
            f"{w['db_cpu_ms_per_fix']:.3f} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} | "
            f"{w.get('pings_stored', '—')} | {w['errors']} |"
        )
    if not rows:
        return []
    return [
        "",
        "Location per fix (wrk, closed loop; fixes/s as a multiple of the baseline's lookups/s; "
        "CPU per fix: API processes and PostgreSQL, from the run's start until both are idle "
        "again, per ping stored in that window):",
        "",
        "| scenario | fixes/req | req/s | fixes/s | × baseline | API CPU ms/fix | "
        "PG CPU ms/fix | p50 ms | p99 ms | pings stored | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


async def set_commit(dsn: str, commit: str) -> None:
    """The commit mode of the bench database for this run (new connections pick it up)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        db = await conn.fetchval("SELECT current_database()")
        if commit == "async":
            await conn.execute(f'ALTER DATABASE "{db}" SET synchronous_commit = off')
        else:
            await conn.execute(f'ALTER DATABASE "{db}" RESET synchronous_commit')
    finally:
        await conn.close()


def write_results(result: dict[str, Any], stem: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    return json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small city and short runs")
    parser.add_argument("--scale", action="store_true", help="the geofence scale curve (+ PNG)")
    parser.add_argument(
        "--sizes", default=None, help="--scale: comma-separated sizes, e.g. 1000,10000,100000"
    )
    parser.add_argument("--rate", type=int, default=None, help="--scale: open-loop rate")
    parser.add_argument(
        "--scale-devices",
        action="store_true",
        help="--scale over devices (--sizes are device counts; 10k geofences)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--geofences", type=int, default=None)
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-product", action="store_true", help="baseline only")
    parser.add_argument("--seconds", type=int, default=None, help="length of each measured run")
    parser.add_argument(
        "--only", default=None, help="comma-separated product scenarios, e.g. pings_single,checkins"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="leave the bench PostGIS running at the end"
    )
    parser.add_argument(
        "--commit",
        choices=["durable", "async"],
        default="durable",
        help="durable (production's setting) or async (synchronous_commit = off, to compare)",
    )
    add_product_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    profile = QUICK if args.quick else DEFAULT
    if args.seconds:
        profile = replace(profile, wrk_s=args.seconds, open_loop_s=args.seconds)
    from bench.load import wrk_available

    if not wrk_available():
        print("wrk is not installed: `make system-deps` (or apt-get install wrk)", file=sys.stderr)
        return 2
    try:
        if args.scale:
            from bench.scale import run_scale

            path = run_scale(args, profile)
        else:
            result = run_all(args, profile)
            stem = datetime.now(UTC).strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
            stem += "-async-commit" if args.commit == "async" else ""
            path = write_results(result, stem)
            print(markdown(result))
        print(f"results: {path}")
    finally:
        if not args.keep_db:
            bench_cluster().stop()  # the data stays cached in .data/bench-pg
    return 0


if __name__ == "__main__":
    sys.exit(main())
