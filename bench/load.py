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
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

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
    connections: int | None = None,
    processes: int = 1,
    requests_per_connection: int = 0,
    run_tag: str = "ol",
    grace_s: float = 10.0,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Send `rate` requests/s for `duration_s`, each at its scheduled time, and time them from
    that time (bench/openloop.py, in `processes` processes of its own splitting the slots).

    `connections` keep-alive connections in all (default: one per millisecond of schedule, 8 to
    128) are opened before the first slot, spread evenly over the processes of a server on
    this machine, and (with `requests_per_connection`) each replaced by a new one after that
    many requests. The result keeps the fields the old in-process
    generator gave (`achieved_rps`, `errors`, `unfinished`, `generator_late`, percentiles) and
    adds `generator`: its own send lag, CPU and connection use, to judge the measurement by.
    """
    conns = connections or max(8, min(128, int(rate)))
    per_process = max(1, -(-conns // processes))
    with tempfile.TemporaryDirectory(prefix="openloop-") as tmp:
        req_file = write_requests(Path(tmp) / "requests.tsv", reqs)
        procs = []
        for index in range(processes):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.openloop",
                    base_url,
                    str(req_file),
                    f"--rate={rate}",
                    f"--seconds={duration_s}",
                    f"--tag={run_tag}",
                    f"--latencies={tmp}/latencies-{index}.bin",
                    f"--connections={per_process}",
                    f"--per-connection={requests_per_connection}",
                    f"--processes={processes}",
                    f"--index={index}",
                    f"--timeout={timeout_s}",
                    f"--grace={grace_s}",
                    "--sync",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=Path(__file__).parent.parent,
                )
            )
        try:
            for p in procs:
                assert p.stdout is not None
                line = await asyncio.wait_for(p.stdout.readline(), 60)
                if line.strip() != b"READY":
                    err = await p.stderr.read() if p.stderr else b""
                    raise RuntimeError(f"open-loop generator failed: {err.decode()[-2000:]}")
            start = time.monotonic() + 0.05  # slot 0, the same clock in every process
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{start!r}\n".encode())
                await p.stdin.drain()
            parts = []
            for index, p in enumerate(procs):
                out, err = await p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"open-loop generator failed: {err.decode()[-2000:]}")
                summary = json.loads(out.decode().strip().splitlines()[-1])
                parts.append((summary, (Path(tmp) / f"latencies-{index}.bin").read_bytes()))
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
    from bench.openloop import merge

    return merge(parts)
