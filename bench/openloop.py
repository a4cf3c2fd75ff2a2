"""The open-loop latency generator: requests at a fixed rate, each timed from its scheduled slot.

`bench.load.open_loop` runs this module in one (or more) processes of its own, which wait for
the common start time on stdin (`--sync`) and leave their raw latencies in a file for it to
merge. By hand, one process, printing the result as `open_loop` returns it:

    uv run python -m bench.openloop http://127.0.0.1:18100 requests.tsv --rate 1000 --seconds 20

Slot i is due at `start + i / rate`. Its latency runs from that moment to the last byte of its
response, whatever happened in between: a late send (the generator's own lateness, reported as
`send_lag_*` and `generator_late`), a wait for a free connection (every connection still busy:
the server is behind), or the server's time. Nothing the server does slows the schedule down,
so queueing is counted (no coordinated omission). A request still unanswered `timeout_s` after
its slot is an error; one still open `grace_s` after the last slot is unfinished (also an error).

Why a process of its own and not aiohttp in the caller: the old generator (one asyncio task, a
`datetime` and an aiohttp request object per request, in the bench runner's own process) paused
for its own garbage collector and event loop, and those pauses were counted as the server's
latency (docs/benchmarks.md, "Load generation"). Here the work per request is a few bytes joins
and one `write`: a fixed set of keep-alive connections is opened before the first slot, spread
evenly over the processes of a server on this machine (`ServerSockets`) and used in turn
(round robin: every connection stays warm, none idles into the server's keep-alive timeout),
no sleep is shorter than uvloop's 1 ms timer tick (shorter ones spun a core), request lines
are compiled to bytes once (placeholders filled from per-second caches), responses are parsed
by httptools (C), the loop is uvloop, and the garbage collector is frozen and disabled for the
measured run (nothing here makes reference cycles per request).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from array import array
from collections import Counter, deque
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.load import PLACEHOLDER, Req, headers_for, read_requests

LATE_S = 0.05  # a send this much after its slot counts in `generator_late`

Part = bytes | str  # a literal, or a placeholder token ("ID", "T30", "E0", "U5")


def _split(text: str) -> list[Part]:
    """Literal bytes and placeholder tokens, alternating (PLACEHOLDER has one group)."""
    pieces = PLACEHOLDER.split(text)
    return [p if k % 2 else p.encode() for k, p in enumerate(pieces) if p or k % 2]


class Filler:
    """Placeholder values, as bench/lua/replay.lua fills them: `@ID@` → `<tag>-<n>`, `@T<n>@`
    the ISO time n seconds ago, `@E<n>@` the same in epoch seconds, `@U<n>@` the ISO time with a
    millisecond part that differs between consecutive requests. Times are formatted once per
    second per token, not per request."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"{tag}-"
        self.ids = 0
        self.sent = 0
        self.second = -1
        self.cache: dict[str, bytes] = {}

    def value(self, token: str, now: int) -> bytes:
        if token == "ID":
            self.ids += 1
            return f"{self.prefix}{self.ids}".encode()
        if now != self.second:
            self.second = now
            self.cache.clear()
        kind = token[0]
        key = "T" + token[1:] if kind == "U" else token
        v = self.cache.get(key)
        if v is None:
            ts = now - int(token[1:])
            v = (
                str(ts).encode()
                if kind == "E"
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)).encode()
            )
            self.cache[key] = v
        if kind == "U":
            return v[:-1] + b".%03dZ" % (self.sent % 1000)
        return v

    def fill(self, parts: list[Part], now: int) -> bytes:
        return b"".join(p if isinstance(p, bytes) else self.value(p, now) for p in parts)


class Template:
    """One request line, compiled: fixed bytes if it has no placeholder, else its parts."""

    __slots__ = ("body", "fixed", "head", "path", "tail")

    def __init__(self, req: Req, host: str) -> None:
        headers = "".join(f"{k}: {v}\r\n" for k, v in headers_for(req).items())
        self.head = f"{req.method} ".encode()
        self.path = _split(req.path)
        self.tail = f" HTTP/1.1\r\nHost: {host}\r\n{headers}".encode()
        self.body = _split(req.body) if req.body else None
        self.fixed: bytes | None = None
        if all(isinstance(p, bytes) for p in [*self.path, *(self.body or [])]):
            self.fixed = self.build(Filler(""), 0)

    def build(self, filler: Filler, now: int) -> bytes:
        if self.fixed is not None:
            return self.fixed
        filler.sent += 1
        path = filler.fill(self.path, now)
        if self.body is None:
            return b"%s%s%s\r\n" % (self.head, path, self.tail)
        body = filler.fill(self.body, now)
        return b"%s%s%sContent-Length: %d\r\n\r\n%s" % (
            self.head,
            path,
            self.tail,
            len(body),
            body,
        )


class ServerSockets:
    """Which process of a server on this machine holds the far end of each connection (from
    /proc: the server's listening socket on `port`, the processes holding it, and their
    accepted sockets). Empty `pids` when the server is not local (nothing is balanced then)."""

    def __init__(self, port: int) -> None:
        self.port = port
        listening = self._sockets(listening=True)
        inodes = set(listening.values())
        self.pids = sorted({pid for inode, pid in self._held(None) if inode in inodes})

    def _sockets(self, *, listening: bool) -> dict[int, str]:
        """Peer port (0 for the listening socket) → inode, for sockets on the server's port."""
        out = {}
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(name).read_text().splitlines()[1:]
            except OSError:
                continue
            local = f":{self.port:04X} "
            for line in lines:
                if local not in line[:60]:
                    continue
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) != self.port:
                    continue
                if listening and f[3] == "0A":
                    out[0] = f[9]
                elif not listening and f[3] == "01":
                    out[int(f[2].rsplit(":", 1)[1], 16)] = f[9]
        return out

    @staticmethod
    def _held(pids: list[int] | None) -> list[tuple[str, int]]:
        """(socket inode, pid) for every socket the processes (None: all) hold."""
        out = []
        if pids is None:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    out.append((link[8:-1], pid))
        return out

    def of(self, conns: list[Conn]) -> dict[Conn, int]:
        """The server process holding each connection's far end (0: not found, e.g. not yet
        accepted)."""
        ends = self._sockets(listening=False)
        holder = dict(self._held(self.pids))
        out = {}
        for conn in conns:
            assert conn.transport is not None
            inode = ends.get(conn.transport.get_extra_info("sockname")[1], "")
            out[conn] = holder.get(inode, 0)
        return out

    async def wait_of(self, conns: list[Conn], within_s: float = 1.0) -> dict[Conn, int]:
        """`of`, looking again while some are not accepted yet (at most `within_s`)."""
        out = self.of(conns)
        deadline = time.monotonic() + within_s
        while not all(out.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            out.update(self.of([c for c, pid in out.items() if not pid]))
        return out


class Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight (`slot`, -1 when idle)."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.slot = -1
        self.served = 0
        self.closed = False
        self.retired = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.fail(self, "parse")

    def on_message_complete(self) -> None:
        self.gen.completed(self, self.parser.get_status_code(), self.parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.lost(self)


class Generator:
    """Sends this process's slots (`index`, `index + processes`, ...) at their times."""

    def __init__(
        self,
        url: str,
        templates: list[Template],
        *,
        rate: float,
        total: int,
        slots: range,
        tag: str,
        connections: int,
        timeout_s: float,
        per_conn: int = 0,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.templates = templates
        self.rate, self.total, self.slots = rate, total, slots
        self.filler = Filler(tag)
        self.n_conns = connections
        self.timeout_s = timeout_s
        self.per_conn = per_conn  # requests before a connection is replaced (0: never)
        self.start = 0.0
        self.free: deque[Conn] = deque()
        self.busy: set[Conn] = set()
        self.pending: deque[int] = deque()  # slots waiting for a free connection
        self.latencies = array("d")
        self.send_lags = array("d")
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.late = 0
        self.queued = 0
        self.reconnects = 0
        self.done = 0
        self.stopped = False
        self.all_done = asyncio.Event()

    def due(self, slot: int) -> float:
        return self.start + slot / self.rate

    async def open_conn(self) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
        return conn

    async def connect(self) -> None:
        self.release(await self.open_conn())

    def retire(self, conn: Conn) -> None:
        """Close an idle connection for good (balancing, before the run)."""
        conn.retired = True
        if conn in self.free:
            self.free.remove(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def balance(self, attempts: int, within_s: float = 2.0) -> list[int]:
        """Spread the idle connections evenly over the server's processes, when the server runs
        on this machine: a new connection that lands on a process with fewer of them replaces
        one of the process with most. At most `attempts` new connections and `within_s` seconds
        (well inside a server's keep-alive timeout: uvicorn's is 5 s). Returns the connections
        per server process."""
        deadline = time.monotonic() + within_s
        owners = ServerSockets(self.port)
        if not owners.pids:
            return []
        where = await owners.wait_of(list(self.free))
        if len(owners.pids) == 1:  # one process: nothing to spread
            return [sum(1 for p in where.values() if p)]
        # a process that got none of the first ones may still be found among a few more
        for _ in range(min(attempts, len(self.free))):
            if len(set(where.values())) > 1:
                break
            conn = await self.open_conn()
            where[conn] = (await owners.wait_of([conn], 0.05))[conn]
            self.free.append(conn)
        tries = 0
        while tries < attempts and time.monotonic() < deadline:
            counts = Counter(where.values())
            counts.pop(0, None)
            if len(counts) < 2:
                break
            (heavy, most), *_, (light, least) = counts.most_common()
            if most - least <= max(1, len(where) // 20):
                break
            # a few new connections one after the other, then one look in /proc for them all
            new = [await self.open_conn() for _ in range(8)]
            tries += len(new)
            for conn, pid in (await owners.wait_of(new, 0.1)).items():
                counts = Counter(p for p in where.values() if p)
                (heavy, most), *_ = counts.most_common()
                if pid and counts[pid] + 1 < most:  # keep it, drop one of the busiest's
                    victim = next(c for c, p in where.items() if p == heavy)
                    del where[victim]
                    self.retire(victim)
                    where[conn] = pid
                    self.free.append(conn)
                else:
                    self.retire(conn)
        while len(self.free) > self.n_conns:  # discovery may have opened a few more
            victim = self.free[-1]
            del where[victim]
            self.retire(victim)
        counts = Counter(p for p in where.values() if p)
        return sorted(counts.values(), reverse=True)

    async def reconnect(self) -> None:
        self.reconnects += 1
        try:
            await self.connect()
        except OSError:
            self.errors["connect"] = self.errors.get("connect", 0) + 1
            await asyncio.sleep(0.1)
            if not self.stopped:
                asyncio.get_running_loop().create_task(self.reconnect())

    def send(self, conn: Conn, slot: int) -> None:
        assert conn.transport is not None
        conn.slot = slot
        self.busy.add(conn)
        tpl = self.templates[slot % len(self.templates)]
        conn.transport.write(tpl.build(self.filler, int(time.time())))

    def dispatch(self, slot: int, now: float) -> None:
        lag = now - self.due(slot)
        self.send_lags.append(lag)
        if lag > LATE_S:
            self.late += 1
        if self.free:
            self.send(self.free.popleft(), slot)
        else:
            self.queued += 1
            self.pending.append(slot)

    def release(self, conn: Conn) -> None:
        """An idle connection takes the oldest waiting slot, or joins the back of the line."""
        if self.pending:
            self.send(conn, self.pending.popleft())
        else:
            self.free.append(conn)

    def finish(self, slot: int) -> None:
        self.done += 1
        if self.done == len(self.slots):
            self.all_done.set()

    def completed(self, conn: Conn, status: int, keep_alive: bool) -> None:
        slot, conn.slot = conn.slot, -1
        self.busy.discard(conn)
        if slot < 0:  # an answer to nothing (timed out and already counted)
            return
        self.latencies.append(time.monotonic() - self.due(slot))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.finish(slot)
        conn.served += 1
        if keep_alive and conn.served != self.per_conn:
            self.release(conn)
        elif conn.transport is not None:
            conn.transport.close()  # connection_lost reconnects

    def fail(self, conn: Conn, kind: str) -> None:
        slot, conn.slot = conn.slot, -1
        self.busy.discard(conn)
        if slot >= 0:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.finish(slot)
        if conn.transport is not None:
            conn.transport.abort()

    def lost(self, conn: Conn) -> None:
        if conn.retired:
            return
        if conn.slot >= 0:
            self.fail(conn, "closed")
        self.busy.discard(conn)
        if conn in self.free:
            self.free.remove(conn)
        if not self.stopped:
            asyncio.get_running_loop().create_task(self.reconnect())

    async def watch_timeouts(self) -> None:
        while self.done < len(self.slots):
            await asyncio.sleep(0.1)
            limit = time.monotonic() - self.timeout_s
            for conn in [c for c in self.busy if c.slot >= 0 and self.due(c.slot) < limit]:
                self.fail(conn, "timeout")
            while self.pending and self.due(self.pending[0]) < limit:
                self.pending.popleft()
                self.errors["timeout"] = self.errors.get("timeout", 0) + 1
                self.finish(-1)

    async def run(self, start: float, grace_s: float) -> float:
        """Send every slot at its time; wait for the answers (at most `grace_s` after the last
        slot). Returns the seconds from the first slot to the end."""
        self.start = start
        if not self.slots:
            return 0.0
        watcher = asyncio.get_running_loop().create_task(self.watch_timeouts())
        k, n = 0, len(self.slots)
        while k < n:
            now = time.monotonic()
            wait = self.due(self.slots[k]) - now
            if wait > 0:
                # uvloop's timers count whole milliseconds: a shorter sleep returns at once, and
                # waiting out the last fraction that way spun a core (0.35 ms of CPU per request
                # instead of 0.14 on an idle machine). A slot is sent up to ~1 ms late instead,
                # counted in its latency and in the send lag.
                await asyncio.sleep(max(wait, 0.001))
                continue
            while k < n and self.due(self.slots[k]) <= now:
                self.dispatch(self.slots[k], now)
                k += 1
        end = self.due(self.total - 1) + grace_s
        try:
            await asyncio.wait_for(self.all_done.wait(), max(0.0, end - time.monotonic()))
        except TimeoutError:
            pass
        watcher.cancel()
        return time.monotonic() - start


def _peak_rss_mb() -> float:
    """This process's peak memory (VmHWM: unlike ru_maxrss, not the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    host = urlsplit(args.url).netloc
    templates = [Template(r, host) for r in read_requests(Path(args.requests))]
    total = int(args.rate * args.seconds)
    gen = Generator(
        args.url,
        templates,
        rate=args.rate,
        total=total,
        slots=range(args.index, total, args.processes),
        tag=f"{args.tag}-{args.index}",
        connections=args.connections,
        timeout_s=args.timeout,
        per_conn=args.per_connection,
    )
    setup = time.monotonic()
    for _ in range(args.connections):
        await gen.connect()
    # A server whose workers share one listening socket (uvicorn --workers) hands a burst of
    # connections to whichever worker wakes first: 128 opened at once went 128/0 or 95/33 here,
    # and one worker then served most of the run. Spread them evenly (a local server), and,
    # with `--per-connection`, replace each after that many requests (staggered), as clients
    # that come and go are spread: a new connection goes to a worker free to accept it.
    server_processes = await gen.balance(attempts=8 * args.connections)
    setup_s = time.monotonic() - setup
    for k, conn in enumerate(gen.free):
        conn.served = k * args.per_connection // args.connections
    # everything built so far lives through the run: out of the collector's sight, and no
    # collections while measuring (the pauses this generator exists to avoid)
    gc.collect()
    gc.freeze()
    gc.disable()
    if args.sync:
        print("READY", flush=True)
        start = float(sys.stdin.readline())  # time.monotonic() of slot 0, in every process
    else:
        start = time.monotonic() + 0.05
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = await gen.run(start, args.grace)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    gc.enable()
    unfinished = len(gen.busy) + len(gen.pending)
    gen.stopped = True
    for conn in list(gen.free) + list(gen.busy):
        if conn.transport is not None:
            conn.transport.abort()
    raw = gen.latencies.tobytes() + gen.send_lags.tobytes()
    if args.latencies:
        Path(args.latencies).write_bytes(raw)
    summary = {
        "rate": args.rate,
        "connections": args.connections,
        "requests": len(gen.slots),
        "responses": len(gen.latencies),
        "elapsed_s": elapsed,
        "statuses": gen.statuses,
        "errors": gen.errors,
        "unfinished": unfinished,
        "late": gen.late,
        "queued": gen.queued,
        "reconnects": gen.reconnects,
        "server_processes": server_processes,
        "setup_s": setup_s,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "peak_rss_mb": _peak_rss_mb(),
    }
    return summary if args.sync else merge([(summary, raw)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("requests", help="a request file (bench/load.py: write_requests)")
    parser.add_argument("--rate", type=float, required=True, help="requests/s, all processes")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tag", default="ol", help="prefix of the @ID@ values")
    parser.add_argument("--latencies", help="where to write the raw latencies (with --sync)")
    parser.add_argument(
        "--sync", action="store_true", help="print READY, read slot 0's time.monotonic() on stdin"
    )
    parser.add_argument("--connections", type=int, default=128, help="keep-alive, this process")
    parser.add_argument(
        "--per-connection",
        type=int,
        default=0,
        help="requests before a connection is replaced (0: never)",
    )
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--index", type=int, default=0, help="this process: 0..processes-1")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds from the slot")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds after the last slot")
    args = parser.parse_args(argv)
    if not 0 <= args.index < args.processes or args.rate <= 0 or args.connections < 1:
        parser.error("need 0 <= index < processes, rate > 0 and connections >= 1")
    if args.processes > 1 and not args.sync:
        parser.error("several processes need --sync (bench.load.open_loop starts them)")
    out = uvloop.run(_main(args))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def percentile_ms(data: list[float], q: float) -> float:
    """The q-quantile of sorted `data` (seconds) in ms, as bench.load.percentiles_ms picks it."""
    return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 2) if data else 0.0


def merge(parts: list[tuple[dict[str, Any], bytes]]) -> dict[str, Any]:
    """One result from every process's summary and raw latencies (+ send lags)."""
    from bench.load import percentiles_ms

    latencies: list[float] = []
    lags: list[float] = []
    for summary, raw in parts:
        values = array("d")
        values.frombytes(raw)
        n = summary["responses"]
        latencies.extend(values[:n])
        lags.extend(values[n:])
    lags.sort()
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    for summary, _ in parts:
        for k, v in summary["statuses"].items():
            statuses[int(k)] = statuses.get(int(k), 0) + v
        for k, v in summary["errors"].items():
            errors[k] = errors.get(k, 0) + v
    total = sum(s["requests"] for s, _ in parts)
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    elapsed = max(s["elapsed_s"] for s, _ in parts)
    unfinished = sum(s["unfinished"] for s, _ in parts)
    cpu_s = sum(s["cpu_s"] for s, _ in parts)
    return {
        "tool": "open-loop",
        "target_rps": parts[0][0]["rate"],
        "duration_s": round(elapsed, 2),
        "requests": total,
        "achieved_rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        # every request that did not end in a 2xx: other statuses, failures, unfinished
        "errors": total - ok,
        "error_kinds": errors,
        "unfinished": unfinished,
        "generator_late": sum(s["late"] for s, _ in parts),
        **percentiles_ms(latencies),
        "generator": {
            "processes": len(parts),
            "connections": sum(s["connections"] for s, _ in parts),
            "send_lag_p50_ms": percentile_ms(lags, 0.50),
            "send_lag_p99_ms": percentile_ms(lags, 0.99),
            "send_lag_max_ms": round(lags[-1] * 1000, 2) if lags else 0.0,
            "queued_for_connection": sum(s["queued"] for s, _ in parts),
            "reconnects": sum(s["reconnects"] for s, _ in parts),
            # connections per server process after balancing (empty: the server is not local)
            "server_processes": [s["server_processes"] for s, _ in parts],
            "setup_s": round(max(s["setup_s"] for s, _ in parts), 2),
            "cpu_ms_per_req": round(cpu_s / max(total, 1) * 1000, 4),
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s, _ in parts), 1),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
