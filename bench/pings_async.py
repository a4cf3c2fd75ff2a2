"""Single-fix pings answered 202 (stored now, evaluated in sets): issue 25's measurements.

    uv run python -m bench.pings_async [--quick] [--maps default,dense] [--seconds N]

Part of `make bench` (bench/run.py runs it after the product scenarios, as `pings_async`); on
its own it provisions the same cities. For each map — the default city and a dense one whose
towns are shrunk (`town_scale`) so each track point lies inside ~2.6 places — in one run:

- the baseline (bench/baseline.py) closed loop, for the ratio;
- single-fix requests answered 202 (`POST /v1/pings`, the default for one fix) under wrk, with
  API and PostgreSQL CPU per fix counted until the queue has been evaluated (the evaluator runs
  inside the API processes, so its CPU is in the API figure);
- the same requests with `?mode=sync` (evaluated in the request, the previous contract);
- an open-loop run at the target rate (1,000 req/s) for the acknowledgment latency, while probe
  devices send single fixes that cause events and poll the database for them: the delay from
  the 202 to the event being visible (committed) and to its push being enqueued (an outbox row,
  for the probes' first event at their place, which an offer there turns into a push).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench import scenarios
from bench.city import City, CityConfig, Place, offset
from bench.db import Dataset, bench_cluster, drain_queue, ping_events, provision, reset_activity
from bench.load import Req, open_loop, percentiles_ms, read_requests, run_wrk, write_requests
from bench.servers import (
    Server,
    add_product_options,
    baseline_server,
    evaluator_label,
    free_port,
    product_options,
    product_server,
)

logger = logging.getLogger("bench.pings_async")


# the dense map: towns shrunk so that each track point lies inside ~2.6 places (the density of
# the independent run issue 25 names; reported per run as `places_per_point`). How much depends
# on the city's size, measured: the quick city (5,000 places) at 0.4 gives 2.61 inside / 4.85
# within trigger distance, the full one (100,000) at 0.55 gives 2.62 / 4.89. The full city at
# 0.4 gives 3.99 / 7.8, half as dense again: the "dense" runs up to 2026-12-05 (`--dense-scale
# 0.4` repeats them)
def dense_scale(geofences: int) -> float:
    return 0.4 if geofences <= 5_000 else 0.55


PROBES = 60  # probe devices (the city's last ones; the load uses the first)
PROBE_POLL_S = 0.01
KNOWN_FIXES = 2  # the open loop's devices' fixes sent before it


def dense(config: CityConfig, scale: float | None = None) -> CityConfig:
    return replace(config, town_scale=scale or dense_scale(config.geofences))


async def places_per_point(dsn: str, city: City, n: int = 1000) -> dict[str, float]:
    """How many places the load's track points lie inside (and within trigger distance of)."""
    points = [f for d in range(min(200, city.config.devices)) for f in city.track(d, 10)][:n]
    conn = await asyncpg.connect(dsn)
    try:
        # the largest trigger distance bounds the index search (a column distance cannot)
        max_trigger = float(await conn.fetchval("SELECT max(trigger_distance_m) FROM geofences"))
        row = await conn.fetchrow(
            """
            SELECT avg(inside)::float8 AS inside, avg(near)::float8 AS near FROM (
              SELECT (SELECT count(*) FROM geofences g
                      WHERE g.deleted_at IS NULL AND ST_Intersects(g.geom, u.pt)) AS inside,
                     (SELECT count(*) FROM geofences g
                      WHERE g.deleted_at IS NULL
                        AND ST_DWithin(g.geog, u.pt::geography, $3, false)
                        AND ST_DWithin(g.geog, u.pt::geography, g.trigger_distance_m, false))
                       AS near
              FROM (SELECT ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS pt
                    FROM unnest($1::float8[], $2::float8[]) AS t(lon, lat)) u) x
            """,
            [p.lon for p in points],
            [p.lat for p in points],
            max_trigger,
        )
    finally:
        await conn.close()
    assert row is not None
    return {"inside": round(row["inside"], 2), "within_trigger": round(row["near"], 2)}


def _cpu(server: Server) -> tuple[float, float]:
    from bench.run import postgres_cpu_s

    return server.cpu_s(), postgres_cpu_s()


def closed_loop(
    server: Server,
    dsn: str,
    name: str,
    reqs: list[Req],
    seconds: int,
    connections: int,
    *,
    warmup: list[Req],
) -> dict[str, Any]:
    """wrk, after a 2 s warm-up with `warmup` (other devices); CPU per request counted until
    every fix it sent has been evaluated. `late_share`: the share of its fixes the engine found
    late (0 unless its file wrapped: bench.run.DevicePool)."""
    from bench.run import count_pings

    path = write_requests(_work() / f"{name}.tsv", reqs)
    tag = f"{name}-{int(time.time())}"
    warm = write_requests(_work() / f"{name}-warmup.tsv", warmup)
    run_wrk(server.url, warm, duration_s=2, connections=16, run_tag=tag + "w")
    asyncio.run(drain_queue(dsn))
    cpu0, db0 = _cpu(server)
    events0 = asyncio.run(ping_events(dsn))
    pings0, late0 = asyncio.run(count_pings(dsn))
    out = run_wrk(server.url, path, duration_s=seconds, connections=connections, run_tag=tag)
    out["drain_s"] = asyncio.run(drain_queue(dsn))
    cpu1, db1 = _cpu(server)
    done = out.get("requests", 0)
    if done:
        out["server_cpu_ms_per_req"] = round((cpu1 - cpu0) / done * 1000, 3)
        out["db_cpu_ms_per_req"] = round((db1 - db0) / done * 1000, 3)
        # what the fixes made of the map: the work per fix grows with its events
        out["events_per_fix"] = round((asyncio.run(ping_events(dsn)) - events0) / done, 3)
        pings1, late1 = asyncio.run(count_pings(dsn))
        out["late_share"] = round((late1 - late0) / max(1, pings1 - pings0), 4)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    logger.info(
        "%s: %s",
        name,
        {
            k: out.get(k)
            for k in (
                "rps",
                "p99_ms",
                "server_cpu_ms_per_req",
                "db_cpu_ms_per_req",
                "drain_s",
                "late_share",
            )
        },
    )
    return out


def _send_known(server: Server, dsn: str, path: Any, reqs: list[Req]) -> dict[str, Any]:
    """Send the open loop's devices' first fixes (at 500/s), then wait for their evaluation."""
    r = asyncio.run(
        open_loop(
            server.url,
            read_requests(write_requests(path, reqs)),
            rate=500,
            duration_s=len(reqs) / 500,
            run_tag=f"ak{int(time.time())}",
        )
    )
    return {
        "requests": r.get("requests"),
        "errors": r.get("errors"),
        "drain_s": asyncio.run(drain_queue(dsn)),
    }


def _work() -> Any:
    from bench.run import WORK

    WORK.mkdir(parents=True, exist_ok=True)
    return WORK


# -- probes: ack → event visible, ack → push enqueued ------------------------------------------


def _probe_places(city: City) -> list[Place]:
    """Small buildings (trigger ≤ 75 m): a fix at the anchor is inside, 170 m away is out."""
    out: list[Place] = []
    i = 0
    while len(out) < PROBES:
        p = city.place((i * 7919) % city.config.geofences)
        i += 1
        rectangle = len(p.ring) <= 5  # an L-shape's anchor is its inner corner, on the edge
        if p.shape_kind == "polygon" and p.category != "park" and rectangle:
            out.append(p)
    return out


def setup_probes(server: Server, city: City) -> list[tuple[str, uuid.UUID, Any]]:
    """The probe devices (token, id, place): no quiet hours, a push subscription each, and one
    offer at their places, so a probe's first event there enqueues a push."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from bench.run import staff_token

    places = _probe_places(city)
    first = city.config.devices - PROBES
    probes = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        admin = staff_token(server, city)
        r = http.post(
            "/v1/offers",
            headers={"Authorization": f"Bearer {admin}"},
            json={
                "title": "Bench offer",
                "body": "Measured from the ping's acknowledgment to the outbox.",
                "geofence_ids": [str(p.id) for p in places],
                "triggers": ["nearby", "enter"],
                "status": "active",
                "cooldown_s": 0,
                "max_per_person": 1000,
                "outside_opening_hours_ok": True,
            },
        )
        r.raise_for_status()
        for k, place in enumerate(places):
            token = city.device_token(first + k)
            h = {"Authorization": f"Bearer {token}"}
            r = http.put("/v1/me/preferences", headers=h, json={"quiet_hours": None})
            r.raise_for_status()
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
            raw = key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            sub = {
                "endpoint": f"http://127.0.0.1:9/push/probe{k}",
                "keys": {
                    "p256dh": b64,
                    "auth": base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
                },
            }
            r = http.post("/v1/push/subscriptions", headers=h, json=sub)
            r.raise_for_status()
            probes.append((token, city.device_id(first + k), place))
    return probes


class _Watch:
    """What the probes wait for, polled for all of them together: every `PROBE_POLL_S` one query
    for the events of every fix still awaited and one for the outboxes of every probe still
    awaiting its push, however many wait. (One query per waiting probe per 10 ms, as at first,
    was up to a few thousand queries a second while events came late: load on the machine
    measured, which made them later still.) A wait ends at the poll that sees the row, as a
    probe's own poll would: the same 10 ms resolution."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.events: dict[tuple[uuid.UUID, str], asyncio.Future[float]] = {}
        self.pushes: dict[uuid.UUID, asyncio.Future[float]] = {}
        self.queries = 0

    def event(self, device: uuid.UUID, fix_id: str) -> asyncio.Future[float]:
        return self.events.setdefault((device, fix_id), asyncio.get_running_loop().create_future())

    def push(self, device: uuid.UUID) -> asyncio.Future[float]:
        return self.pushes.setdefault(device, asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PROBE_POLL_S)
            if self.events:
                keys = list(self.events)
                rows = await self.conn.fetch(
                    "SELECT DISTINCT device_id, ping_id FROM presence_events "
                    "WHERE device_id = ANY($1::uuid[]) AND ping_id = ANY($2::text[])",
                    [d for d, _ in keys],
                    [f for _, f in keys],
                )
                self.queries += 1
                seen = time.perf_counter()
                for r in rows:
                    fut = self.events.pop((r["device_id"], r["ping_id"]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(seen)
            if self.pushes:
                rows = await self.conn.fetch(
                    "SELECT DISTINCT s.device_id FROM outbox o "
                    "JOIN push_subscriptions s ON s.id = o.subscription_id "
                    "WHERE s.device_id = ANY($1::uuid[])",
                    list(self.pushes),
                )
                self.queries += 1
                seen = time.perf_counter()
                for r in rows:
                    fut = self.pushes.pop(r["device_id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(seen)


async def run_probes(
    base_url: str, dsn: str, probes: list[tuple[str, uuid.UUID, Any]], duration_s: float
) -> dict[str, Any]:
    """Each probe walks: at its place (nearby, then enter), away twice (exit), and again; every
    fix one request, 3 s apart. After each 202 it waits for the fix's events (and, for its
    first event, its outbox row) to be committed, seen by `_Watch`'s polls."""
    event_delays: list[float] = []
    push_delays: list[float] = []
    series: list[tuple[float, float]] = []  # (s since the start, event delay s)
    missing = 0
    conn = await asyncpg.connect(dsn)
    watch = _Watch(conn)
    start = time.perf_counter()
    poller = asyncio.create_task(watch.run())

    async def waited(fut: asyncio.Future[float], acked: float, into: list[float]) -> bool:
        try:
            seen = await asyncio.wait_for(asyncio.shield(fut), 10)
        except TimeoutError:
            return False
        into.append(seen - acked)
        return True

    async def probe(k: int, token: str, device: uuid.UUID, place: Any) -> None:
        nonlocal missing
        await asyncio.sleep(k * 3.0 / len(probes))  # spread the probes over the period
        inside = place.anchor
        away = offset(place.anchor[0], place.anchor[1], 0, 170)
        plan = [inside, inside, away, away]
        end = time.monotonic() + duration_s
        step = 0
        pushed = False
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            while time.monotonic() < end:
                lon, lat = plan[step % len(plan)]
                fix_id = f"probe-{uuid.uuid4().hex[:12]}"
                body = {
                    "pings": [
                        {
                            "id": fix_id,
                            "lon": lon,
                            "lat": lat,
                            "accuracy_m": 5.0,
                            "recorded_at": datetime.now(UTC).isoformat(),
                        }
                    ]
                }
                want_event = (step + 1) % len(plan) in (1, 2, 0)  # nearby, enter, exit
                want_push = want_event and not pushed
                # asked for before the request, so no poll between the 202 and this is missed
                event = watch.event(device, fix_id) if want_event else None
                push = watch.push(device) if want_push else None
                try:
                    r = await http.post(
                        "/v1/pings", json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                except httpx.HTTPError:
                    watch.events.pop((device, fix_id), None)
                    missing += 1
                    continue
                acked = time.perf_counter()
                step += 1
                if r.status_code != 202:
                    watch.events.pop((device, fix_id), None)
                    missing += 1
                    continue
                if event is not None:
                    if await waited(event, acked, event_delays):
                        series.append((acked - start, event_delays[-1]))
                    else:
                        watch.events.pop((device, fix_id), None)
                        missing += 1
                if push is not None:
                    pushed = True
                    await waited(push, acked, push_delays)
                await asyncio.sleep(max(0.0, 3.0 - (time.perf_counter() - acked)))

    try:
        await asyncio.gather(*(probe(k, *p) for k, p in enumerate(probes)))
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await conn.close()
    return {
        "probes": len(probes),
        "event_delay": {"samples": len(event_delays), **percentiles_ms(event_delays)},
        "push_enqueued_delay": {"samples": len(push_delays), **percentiles_ms(push_delays)},
        "missing": missing,
        "probe_queries_per_s": round(watch.queries / duration_s, 1),
        # by third of the run (its first seconds include the load's connections opening)
        "event_delay_by_third": [
            percentiles_ms(
                [d for t, d in series if k * duration_s / 3 <= t < (k + 1) * duration_s / 3]
            )
            for k in range(3)
        ],
        # the longest delay of each second of the run, ms (where in the run the late ones were)
        "event_delay_max_by_second": [
            round(max((d for t, d in series if k <= t < k + 1), default=0.0) * 1000)
            for k in range(math.ceil(duration_s))
        ],
    }


async def _open_loop_with_probes(
    server: Server, dsn: str, path: Any, rate: int, seconds: int, probes: list[Any]
) -> dict[str, Any]:
    load, delays = await asyncio.gather(
        open_loop(
            server.url,
            read_requests(path),
            rate=rate,
            duration_s=seconds,
            run_tag=f"ao{int(time.time())}",
        ),
        run_probes(server.url, dsn, probes, seconds),
    )
    return {"open_loop": load, **delays, "drain_s": await drain_queue(dsn)}


# -- one map -----------------------------------------------------------------------------------


def measure_map(
    dataset: Dataset,
    city: City,
    *,
    seconds: int,
    rate: int,
    workers: int,
    connections: int,
    track_devices: int,
    track_fixes: int,
    evaluator: str = "embedded",
    worker_nice: int = 10,
    settings: dict[str, str] | None = None,
    evaluator_workers: int = 1,
) -> dict[str, Any]:
    from bench.run import SIZING_RPS, DevicePool, count_pings, devices_for, measure, quiesce

    asyncio.run(reset_activity(dataset.dsn))
    out: dict[str, Any] = {
        "dataset": dataset.config.key,
        "places_per_point": asyncio.run(places_per_point(dataset.dsn, city)),
    }
    work = _work()
    base = baseline_server(dataset.dsn, free_port(), workers, work / "baseline-async.log")
    base.start()
    try:
        from bench.run import Profile

        profile = Profile(0, 0, seconds, seconds, 2, connections, rate, 0, 0, 0, 0)
        out["baseline"] = measure(
            base, "baseline_async", scenarios.baseline_requests(city, 20_000), profile
        )["wrk"]
    finally:
        base.stop()
    baseline_rps = float(out["baseline"]["rps"])

    prod = product_server(
        dataset.url,
        free_port(offset=1),
        workers,
        work / "product-async.log",
        evaluator=evaluator,
        worker_nice=worker_nice,
        settings=settings,
        evaluator_workers=evaluator_workers,
    )
    prod.start(timeout_s=120)
    try:
        # each phase its own devices, its file sized not to wrap (bench.run.DevicePool): the
        # closed loops for SIZING_RPS (202) and a third of it (sync), the open loop for its rate
        pool = DevicePool(prod, city, reserved=PROBES)
        probes = setup_probes(prod, city)

        def singles(lines: float) -> list[Req]:
            toks = pool.take(devices_for(lines, track_fixes))
            return scenarios.single_ping_requests(city, len(toks), track_fixes, toks)

        out["async"] = closed_loop(
            prod,
            dataset.dsn,
            "pings_async",
            singles(seconds * SIZING_RPS),
            seconds,
            connections,
            warmup=singles(2 * SIZING_RPS),
        )
        sync = [replace(r, path="/v1/pings?mode=sync") for r in singles(seconds * SIZING_RPS / 3)]
        warm = [replace(r, path="/v1/pings?mode=sync") for r in singles(2 * SIZING_RPS / 3)]
        out["sync"] = closed_loop(
            prod, dataset.dsn, "pings_sync", sync, seconds, connections, warmup=warm
        )
        # the open loop's devices are known phones (their tokens cached, their rows made, a
        # last fix each): their first fixes are sent before it, the open loop sends the rest
        toks = pool.take(devices_for(seconds * rate * 1.2, track_fixes - KNOWN_FIXES))
        known = scenarios.single_ping_requests(city, len(toks), track_fixes, toks, 0, KNOWN_FIXES)
        single = scenarios.single_ping_requests(city, len(toks), track_fixes, toks, KNOWN_FIXES)
        out["devices"] = {"handed_out": pool.handed, "city_ran_out": pool.wrapped}
        out["known_fixes"] = _send_known(prod, dataset.dsn, work / "pings_async_known.tsv", known)
        path = write_requests(work / "pings_async_ol.tsv", single)
        # the open loop measures the target rate, not the end of the saturated run before it
        # (its autovacuum and checkpoint): it starts once the API and PostgreSQL are near idle
        out["quiesce_s"] = quiesce(prod)
        pings0, late0 = asyncio.run(count_pings(dataset.dsn))
        out.update(
            asyncio.run(_open_loop_with_probes(prod, dataset.dsn, path, rate, seconds, probes))
        )
        asyncio.run(drain_queue(dataset.dsn))
        pings1, late1 = asyncio.run(count_pings(dataset.dsn))
        out["open_loop"]["late_share"] = round((late1 - late0) / max(1, pings1 - pings0), 4)
        out["evaluator_sets"] = _eval_metrics(prod)
    finally:
        prod.stop()
    ol = out["open_loop"]
    a = out["async"]
    # the fixes evaluated per second of the run and of the drain after it: what the 202 path
    # sustains (acknowledgments that outrun the evaluators leave a queue to drain)
    a["sustained_rps"] = round(
        a["requests"] / (a["requests"] / a["rps"] + a["drain_s"]) if a.get("rps") else 0.0, 1
    )
    out["ratios"] = {
        "async_rps_ratio": round(float(out["async"]["rps"]) / baseline_rps, 3),
        "async_sustained_ratio": round(a["sustained_rps"] / baseline_rps, 3),
        "sync_rps_ratio": round(float(out["sync"]["rps"]) / baseline_rps, 3),
    }
    out["targets"] = {
        "rps_ge_0_8x_baseline": out["ratios"]["async_sustained_ratio"] >= 0.8,
        "p99_le_25ms_at_rate": ol.get("errors", 1) == 0
        and ol["p99_ms"] <= 25
        and ol["target_rps"] >= 1000,
        "event_delay_p99_le_1s": out["event_delay"]["samples"] > 0
        and out["event_delay"]["p99_ms"] <= 1000,
    }
    return out


def _eval_metrics(server: Server) -> dict[str, Any]:
    """One API process's evaluator sets (from its /metrics: count, mean fixes per set)."""
    try:
        text = httpx.get(server.url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    vals: dict[str, float] = {}
    for line in text.splitlines():
        for k in ("hereabouts_ping_eval_set_fixes_count", "hereabouts_ping_eval_set_fixes_sum"):
            if line.startswith(k + " "):
                vals[k] = float(line.split()[1])
    n = vals.get("hereabouts_ping_eval_set_fixes_count", 0)
    s = vals.get("hereabouts_ping_eval_set_fixes_sum", 0)
    return {"sets": int(n), "mean_fixes_per_set": round(s / n, 1) if n else None}


def run(
    config: CityConfig,
    *,
    maps: list[str],
    seconds: int,
    rate: int,
    workers: int,
    connections: int,
    track_devices: int,
    track_fixes: int,
    evaluator: str = "embedded",
    worker_nice: int = 10,
    settings: dict[str, str] | None = None,
    evaluator_workers: int = 1,
    dense_town_scale: float | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": "ok",
        "machine_load_at_start": list(os.getloadavg()),
        "evaluator": evaluator_label(evaluator, worker_nice, evaluator_workers),
        "settings": settings or {},
    }
    for name in maps:
        cfg = config if name == "default" else dense(config, dense_town_scale)
        dataset = provision(cfg)
        logger.info("pings_async on the %s map (%s)", name, cfg.key)
        out[name] = measure_map(
            dataset,
            City(cfg),
            seconds=seconds,
            rate=rate,
            workers=workers,
            connections=connections,
            track_devices=track_devices,
            track_fixes=track_fixes,
            evaluator=evaluator,
            worker_nice=worker_nice,
            settings=settings,
            evaluator_workers=evaluator_workers,
        )
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Ping evaluator: {r.get('evaluator', 'embedded')}"
        + "".join(f", {k}={v}" for k, v in r.get("settings", {}).items())
        + "; load average at start "
        f"{r.get('machine_load_at_start')}.",
        "",
        "| map | places per point (inside / within trigger); events per fix | baseline req/s "
        "| 202 req/s (× baseline) | evaluated/s with the drain (×) | API + PG CPU ms per fix "
        "| sync req/s (×) | sync CPU ms "
        "| ack p50 / p99 ms at rate "
        "| event delay p50 / p99 ms | push enqueued p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("default", "dense"):
        m = r.get(name)
        if not m:
            continue
        a, s, ol = m["async"], m["sync"], m["open_loop"]
        ev, pu = m["event_delay"], m["push_enqueued_delay"]
        lines.append(
            f"| {name} | {m['places_per_point']['inside']} / "
            f"{m['places_per_point']['within_trigger']}; {a.get('events_per_fix', '–')} | "
            f"{m['baseline']['rps']:,.0f} | "
            f"{a['rps']:,.0f} ({m['ratios']['async_rps_ratio']:.2f}×) | "
            f"{a.get('sustained_rps', 0):,.0f} "
            f"({m['ratios'].get('async_sustained_ratio', 0):.2f}×, drain {a.get('drain_s')} s) | "
            f"{a.get('server_cpu_ms_per_req')} + {a.get('db_cpu_ms_per_req')} | "
            f"{s['rps']:,.0f} ({m['ratios']['sync_rps_ratio']:.2f}×) | "
            f"{s.get('server_cpu_ms_per_req')} + {s.get('db_cpu_ms_per_req')} | "
            f"{ol['p50_ms']:.1f} / {ol['p99_ms']:.1f} at {ol['achieved_rps']:.0f}/s "
            f"({ol['errors']} errors) | {ev.get('p50_ms', '–')} / {ev.get('p99_ms', '–')} "
            f"(n={ev['samples']}) | {pu.get('p50_ms', '–')} / {pu.get('p99_ms', '–')} "
            f"(n={pu['samples']}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.run import DEFAULT, QUICK, RESULTS

    parser = argparse.ArgumentParser(
        prog="python -m bench.pings_async",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--maps", default="default,dense")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--rate", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--dense-scale",
        type=float,
        default=None,
        help="the dense map's town scale (default: ~2.6 places per point, `dense_scale`)",
    )
    add_product_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("bench").setLevel(logging.INFO)
    p = QUICK if args.quick else DEFAULT
    config = CityConfig(seed=42, geofences=p.geofences, devices=p.devices)
    try:
        result = run(
            config,
            maps=args.maps.split(","),
            seconds=args.seconds or p.wrk_s,
            rate=args.rate or p.ping_rate,
            workers=args.workers,
            connections=p.connections,
            track_devices=p.track_devices,
            track_fixes=p.track_fixes,
            dense_town_scale=args.dense_scale,
            **product_options(args),
        )
    finally:
        if not args.keep_db:
            bench_cluster().stop()
    stem = datetime.now(UTC).strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stem}-pings-async.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{stem}-pings-async.md").write_text(markdown(result))
    print(markdown(result))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
