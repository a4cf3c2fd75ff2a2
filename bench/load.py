"""Load generation: closed-loop throughput with `wrk` and open-loop latency at a fixed rate.

Both replay the same request files (one request per line, see bench/lua/replay.lua), so a
scenario is defined once. `wrk` (C, one thread) measures the most requests/s the server gives;
`open_loop` sends at a fixed rate whatever the server does and measures each latency from the
moment the request *should* have been sent, so queueing shows up (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp

LUA = Path(__file__).parent / "lua" / "replay.lua"
# @ID@ a unique id; @T<n>@ the ISO time n seconds ago; @E<n>@ the same as epoch seconds;
# @U<n>@ the ISO time with milliseconds (differing between requests: a replayed batch whose
# fixes' ids are derived from their time, as the apps' are, is then not a duplicate)
PLACEHOLDER = re.compile(r"@(ID|[TEU]\d+)@")


@dataclass(frozen=True)
class Req:
    """One request line. `token` is a bearer token, or a whole `Authorization` value when it
    names its scheme ("Basic dXNlcjp0b2tlbg==", as OwnTracks sends). Placeholders are filled in
    the body and the path (Traccar Client puts its fix in the query string)."""

    method: str
    path: str
    token: str = ""
    body: str = ""


def headers_for(req: Req) -> dict[str, str]:
    """The headers a request line is sent with (as bench/lua/replay.lua builds them)."""
    headers = {"Content-Type": "application/json"} if req.body else {}
    if req.token:
        headers["Authorization"] = req.token if " " in req.token else f"Bearer {req.token}"
    return headers


def write_requests(path: Path, reqs: list[Req]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for r in reqs:
            if any(c in f"{r.path}{r.token}{r.body}" for c in "\t\n"):
                raise ValueError("request lines must have no tab or newline")
            fh.write(f"{r.method}\t{r.path}\t{r.token}\t{r.body}\n")
    return path


def read_requests(path: Path) -> list[Req]:
    out = []
    for line in path.read_text().splitlines():
        method, p, token, body = line.split("\t", 3)
        out.append(Req(method, p, token, body))
    return out


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    if not latencies_s:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    data = sorted(latencies_s)

    def pick(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    return {
        "p50_ms": round(pick(0.50), 2),
        "p95_ms": round(pick(0.95), 2),
        "p99_ms": round(pick(0.99), 2),
        "max_ms": round(data[-1] * 1000, 2),
        "mean_ms": round(sum(data) / len(data) * 1000, 2),
    }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str,
    requests_file: Path,
    *,
    duration_s: int,
    connections: int = 64,
    threads: int = 1,
    run_tag: str = "run",
) -> dict[str, Any]:
    """Closed loop: `connections` in flight for `duration_s`; requests/s and latency."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base_url,
        "--",
        str(requests_file),
        run_tag,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {
        "tool": "wrk",
        "connections": connections,
        "duration_s": round(seconds, 2),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "errors": errors,
        "non_2xx": raw["errors_status"],
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": round(raw["mean_us"] / 1000, 2),
    }


def fill_placeholders(body: str, tag: str, counter: count[int], now: datetime) -> str:
    def repl(m: re.Match[str]) -> str:
        token = m.group(1)
        if token == "ID":
            return f"{tag}-{next(counter)}"
        ts = now - timedelta(seconds=int(token[1:]))
        if token[0] == "E":
            return str(int(ts.timestamp()))
        if token[0] == "U":
            return ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.microsecond // 1000:03d}Z"
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")

    return PLACEHOLDER.sub(repl, body)


async def open_loop(
    base_url: str,
    reqs: list[Req],
    *,
    rate: float,
    duration_s: float,
    max_in_flight: int = 512,
    run_tag: str = "ol",
    grace_s: float = 10.0,
) -> dict[str, Any]:
    """Send `rate` requests/s for `duration_s`, each at its scheduled time, and time them."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    late = 0
    counter = count(1)
    total = int(rate * duration_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    sem = asyncio.Semaphore(max_in_flight)

    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as http:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            r = reqs[i % len(reqs)]
            headers = headers_for(r)
            now = datetime.now(UTC)
            body = fill_placeholders(r.body, run_tag, counter, now) if r.body else None
            path = fill_placeholders(r.path, run_tag, counter, now)
            try:
                async with sem, http.request(r.method, path, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except Exception:  # noqa: BLE001 - a failed request is a measured error
                errors += 1
                return
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            tasks.append(asyncio.create_task(one(i, scheduled)))
        # bounded: a saturated server is not waited on for minutes (a request still open
        # `grace_s` after the last was due is cancelled and counted as an error, "unfinished")
        _done, pending = await asyncio.wait(
            tasks, timeout=max(0.0, start + duration_s + grace_s - time.perf_counter())
        )
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start

    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "tool": "open-loop",
        "target_rps": rate,
        "duration_s": round(elapsed, 2),
        "requests": total,
        "achieved_rps": round(ok / elapsed, 1),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors + (total - ok - errors),
        "unfinished": len(pending),
        "generator_late": late,
        **percentiles_ms(latencies),
    }
