"""The open-loop generator (bench/openloop.py) against tiny local servers whose latency is known:
one answering every request 5 ms after reading it, one that stalls its whole process for 200 ms
once (as a garbage collector or a busy core does), one that drops or never answers some requests.
The percentiles must show what the server did, counting from each request's slot: a generator
that timed requests from when it got round to sending them (coordinated omission) would report
the stall as a handful of slow requests and a p99 of a few milliseconds."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bench.load import Req, open_loop

pytestmark = pytest.mark.slow
LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


@dataclass
class Seen:
    """What the server received, in order of arrival."""

    bodies: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    connections: int = 0


# what to do with request n (0-based, in arrival order): seconds to wait before answering,
# "close" (drop the connection unanswered) or "ignore" (never answer)
Behaviour = Callable[[int, Seen], float | str]


@asynccontextmanager
async def server(behaviour: Behaviour) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = LENGTH.search(head)
                body = await reader.readexactly(int(m.group(1))) if m else b""
                n = len(seen.bodies)
                seen.bodies.append(body)
                seen.arrivals.append(time.monotonic())
                action = behaviour(n, seen)
                if action == "close":
                    break
                if action == "ignore":
                    await reader.read()  # until the client gives up and closes
                    break
                if isinstance(action, float) and action > 0:
                    await asyncio.sleep(action)
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ids":[]}\n')
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        srv.close()


REQS = [
    Req("POST", "/v1/pings", "tok", json.dumps({"id": "@ID@", "recorded_at": "@T5@", "n": i}))
    for i in range(50)
]


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_constant_5ms_server_measures_5ms_and_every_request_is_fresh(
    processes: int,
) -> None:
    async with server(lambda n, seen: 0.005) as (url, seen):
        r = await open_loop(url, REQS, rate=200, duration_s=2, run_tag="five", processes=processes)
    assert (r["requests"], r["ok"], r["errors"], r["unfinished"]) == (400, 400, 0, 0)
    assert r["generator"]["processes"] == processes
    # every connection found held by this (the server's) process, one list per generator process
    assert [sum(c) for c in r["generator"]["server_processes"]] == [128 // processes] * processes
    assert r["statuses"] == {"200": 400}
    # never less than the server's 5 ms; on a shared machine allow scheduling noise above it
    assert 5.0 <= r["p50_ms"] < 25.0, r
    assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["generator"]["connections"] >= 8
    # the placeholders were filled per request: unique ids, a time 5 s ago, lines in turn
    bodies = [json.loads(b) for b in seen.bodies]
    assert len({b["id"] for b in bodies}) == 400
    assert all(b["id"].startswith("five-") for b in bodies)
    # the lines in turn: 400 slots over 50 lines, each line 8 times
    assert Counter(b["n"] for b in bodies) == dict.fromkeys(range(50), 8)
    now = datetime.now(UTC).timestamp()
    for b in bodies:
        ago = now - datetime.fromisoformat(b["recorded_at"].replace("Z", "+00:00")).timestamp()
        assert 4 <= ago < 15, b
    # sent at the rate, not in bursts: 400 arrivals over about 2 s
    span = seen.arrivals[-1] - seen.arrivals[0]
    assert 1.9 <= span < 2.5, span


async def test_a_200ms_stall_shows_in_the_tail_although_few_requests_were_in_flight() -> None:
    """4 connections, 500 req/s: while the server is stalled, 4 requests are on the wire and
    about 96 more wait for a connection in the generator. All of them are late by up to 200 ms,
    and the generator must say so."""
    stalled: list[float] = []

    def behaviour(n: int, seen: Seen) -> float:
        if not stalled and seen.arrivals[-1] - seen.arrivals[0] >= 1.0:
            stalled.append(time.monotonic())
            time.sleep(0.2)  # the whole server process stops, as in a GC pause
        return 0.001

    async with server(behaviour) as (url, seen):
        r = await open_loop(
            url,
            REQS,
            rate=500,
            duration_s=3,
            connections=4,
            requests_per_connection=0,
            run_tag="stall",
        )
    assert stalled, "the server never stalled"
    assert (r["requests"], r["ok"], r["errors"]) == (1500, 1500, 0)
    assert seen.connections == 4
    # ~100 of 1,500 slots (6.7 %) fall in the stall, late by 200 ms down to 0: the slowest 1 %
    # (15) by at least ~170 ms. Timed from the actual send, only the 4 requests on the wire
    # would be that slow (0.27 %), and p99 would be the server's 1 ms.
    assert r["max_ms"] >= 190, r
    assert r["p99_ms"] >= 150, r
    assert r["p95_ms"] >= 20, r
    # and it is a tail: most requests were not held up (on a loaded machine the median moves
    # with the scheduling noise, so it is compared with the tail, not with a fixed figure)
    assert r["p50_ms"] < r["p99_ms"] / 3, r
    assert r["generator"]["queued_for_connection"] >= 50, r


async def test_dropped_and_unanswered_requests_are_errors() -> None:
    def behaviour(n: int, seen: Seen) -> float | str:
        if n % 50 == 7:
            return "close"
        if n % 50 == 23:
            return "ignore"
        return 0.0

    async with server(behaviour) as (url, _seen):
        r = await open_loop(
            url, REQS, rate=100, duration_s=2, run_tag="drop", timeout_s=0.5, grace_s=1.0
        )
    # 200 slots: requests 7, 57, 107, 157 dropped; 23, 73, 123, 173 never answered. The
    # server counts arrivals, so a request sent again on a new connection is not possible:
    # each slot is sent once.
    assert r["requests"] == 200
    assert r["error_kinds"] == {"closed": 4, "timeout": 4}, r
    assert (r["ok"], r["errors"], r["unfinished"]) == (192, 8, 0)
    assert r["generator"]["reconnects"] >= 4  # each timed-out or dropped connection replaced


WORKER = """
import asyncio, socket, sys

async def main() -> None:
    served = 0

    async def handle(reader, writer):
        nonlocal served
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                served += 1
                writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    sock = socket.socket(fileno=int(sys.argv[1]))
    await asyncio.start_server(handle, sock=sock)
    print("up", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(served, flush=True)

asyncio.run(main())
"""


async def test_connections_are_spread_over_the_processes_of_a_server_sharing_one_socket() -> None:
    """Two processes accepting on one listening socket (as uvicorn --workers does): the
    connections, and so the requests, are split about evenly between them."""
    import socket
    import subprocess
    import sys

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "up"
        r = await open_loop(f"http://127.0.0.1:{port}", REQS, rate=500, duration_s=2)
    finally:
        sock.close()
        served = [int(w.communicate(timeout=30)[0].strip()) for w in workers]
    assert (r["ok"], r["errors"]) == (1000, 0)
    # the test process holds the listening socket too, but accepts nothing
    [split] = r["generator"]["server_processes"]
    assert len(split) == 2, split
    assert sum(split) == 128, split
    assert split[0] - split[1] <= 128 // 20, split
    assert sum(served) == 1000
    assert min(served) >= 400, served  # round robin over evenly spread connections


def test_request_lines_compile_to_the_bytes_replay_lua_sends() -> None:
    """Placeholders as bench/lua/replay.lua fills them; Content-Length of the filled body."""
    from bench.openloop import Filler, Template

    body = '{"id":"@ID@","t":"@T60@","e":@E0@,"u":"@U0@"}'
    tpl = Template(Req("POST", "/v1/pings?at=@E5@", "Basic dXNlcg==", body), "h:1")
    filler = Filler("run")
    now = int(time.time())
    first, second = tpl.build(filler, now), tpl.build(filler, now)
    head, _, sent = first.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"POST /v1/pings?at={now - 5} HTTP/1.1"
    assert "Host: h:1" in lines
    assert "Authorization: Basic dXNlcg==" in lines  # a whole Authorization value, as given
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(sent)}" in lines
    doc = json.loads(sent)
    assert doc["id"] == "run-1"
    assert json.loads(second.partition(b"\r\n\r\n")[2])["id"] == "run-2"
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    assert doc["t"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    assert doc["e"] == now
    assert doc["u"] == f"{iso}.001Z"  # milliseconds from the request count: differ per request
    assert json.loads(second.partition(b"\r\n\r\n")[2])["u"] == f"{iso}.002Z"
    fixed = Template(Req("GET", "/healthz"), "h:1")
    assert fixed.build(filler, now) == b"GET /healthz HTTP/1.1\r\nHost: h:1\r\n\r\n"
