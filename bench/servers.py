"""Start, watch and stop the servers under test (each in its own process group)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _port_range() -> range:
    """HEREABOUTS_BENCH_PORTS="18100-18199" (default): where the servers under test listen."""
    first, _, last = os.environ.get("HEREABOUTS_BENCH_PORTS", "18100-18199").partition("-")
    return range(int(first), int(last or first) + 1)


PORT_RANGE = _port_range()


def free_port(start: int | None = None, *, offset: int = 0) -> int:
    """The first port from `start` (default: the range's start + `offset`) nobody listens on."""
    begin = start if start is not None else PORT_RANGE.start + offset
    for port in range(begin, PORT_RANGE.stop):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total_kb = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
        stack.extend(_children(p))
    return round(total_kb / 1024, 1)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and cutime, cstime: children already reaped (a closed DB backend)
        total += sum(int(x) for x in fields[11:15])
        stack.extend(_children(p))
    return total / ticks


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # processes started with the server and stopped with it, whose CPU counts as the server's
    # (the ping evaluator as `hereabouts worker`): (name, command)
    companions: list[tuple[str, list[str]]] = field(default_factory=list)
    companion_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self._start_main(timeout_s)
        for name, cmd in self.companions:
            path = self.log_path.with_suffix(f".{name}.log") if self.log_path else None
            log = open(path, "wb") if path else subprocess.DEVNULL  # noqa: SIM115
            self.companion_procs.append(
                subprocess.Popen(
                    cmd,
                    env={**os.environ, **self.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        time.sleep(2.0 if self.companions else 0.0)  # let them connect
        for p in self.companion_procs:
            if p.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name}'s companion exited with {p.returncode}")

    def _start_main(self, timeout_s: float) -> None:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text()[-3000:] if self.log_path else ""
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        time.sleep(0.5)  # let the second worker finish starting
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout_s:.0f} s")

    def rss_mb(self) -> float:
        return tree_rss_mb(self.proc.pid) if self.proc else 0.0

    def cpu_s(self) -> float:
        """CPU seconds the server (master + workers) has used: steadier than req/s on a busy
        machine, since it does not count the time other processes held the cores."""
        own = tree_cpu_s(self.proc.pid) if self.proc else 0.0
        return own + self.companion_cpu_s()

    def companion_cpu_s(self) -> float:
        """CPU seconds of the companions (the evaluator's worker) alone: part of `cpu_s`."""
        return sum(tree_cpu_s(p.pid) for p in self.companion_procs)

    def stop(self) -> None:
        for p in [*self.companion_procs, *([self.proc] if self.proc else [])]:
            if p.poll() is not None:
                continue
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.companion_procs = []


def baseline_server(dsn: str, port: int, workers: int, log_path: Path) -> Server:
    return Server(
        name="baseline",
        cmd=[
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baseline:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        port=port,
        env={"BENCH_DSN": dsn},
        log_path=log_path,
    )


EVALUATORS = ("embedded", "worker")


def add_product_options(parser: argparse.ArgumentParser) -> None:
    """The options of the product under test that `bench.run` and `bench.pings_async` share
    (`product_options` turns them into `product_server`'s keyword arguments)."""
    parser.add_argument(
        "--evaluator",
        choices=list(EVALUATORS),
        default="embedded",
        help="where fixes answered 202 are evaluated: in the API processes (the default "
        "deployment) or in `hereabouts worker --no-push` processes beside API processes that "
        "only ingest (their CPU counts as the API's)",
    )
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="with --evaluator worker: their nice value"
    )
    parser.add_argument(
        "--evaluator-workers", type=int, default=1, help="with --evaluator worker: how many"
    )
    parser.add_argument(
        "--setting",
        action="append",
        metavar="NAME=VALUE",
        help="a setting of the product under test (HEREABOUTS_NAME), e.g. "
        "ping_evaluator_max_subjects=100; recorded in the result",
    )


def product_options(args: argparse.Namespace) -> dict[str, Any]:
    """`product_server`'s keyword arguments from `add_product_options`' options."""
    return {
        "evaluator": args.evaluator,
        "worker_nice": args.worker_nice,
        "evaluator_workers": args.evaluator_workers,
        "settings": parse_settings(args.setting),
    }


def evaluator_label(evaluator: str, worker_nice: int = 10, evaluator_workers: int = 1) -> str:
    """How a result names the evaluator's placement."""
    if evaluator != "worker":
        return evaluator
    return f"{evaluator} ({evaluator_workers} × nice {worker_nice})"


def parse_settings(items: list[str] | None) -> dict[str, str]:
    """`--setting NAME=VALUE` options: HEREABOUTS_NAME=VALUE for the product under test."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--setting {item!r}: NAME=VALUE")
        name = name.upper()
        out[name if name.startswith("HEREABOUTS_") else "HEREABOUTS_" + name] = value
    return out


def product_server(
    url: str,
    port: int,
    workers: int,
    log_path: Path,
    *,
    evaluator: str = "embedded",
    worker_nice: int = 10,
    worker_poll_s: float = 0.1,
    settings: dict[str, str] | None = None,
    evaluator_workers: int = 1,
) -> Server:
    """`hereabouts serve`. `evaluator`: where the 202 path's fixes are evaluated — "embedded"
    (the default deployment: the evaluator in each API process) or "worker" (the API processes
    only ingest, `HEREABOUTS_RUN_PING_EVALUATOR_IN_PROCESS=false`, and one `hereabouts worker
    --no-push` (or `evaluator_workers` of them) evaluates, started under `nice -n worker_nice`,
    polling the queue every
    `worker_poll_s` (`HEREABOUTS_PING_EVALUATOR_POLL_S`: nothing wakes it sooner, since the fixes
    are queued by other processes); its CPU counts as the server's). With several, each gets
    a slot (`HEREABOUTS_PING_EVALUATOR_SLOTS` = `evaluator_workers`, unless `settings` say)."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator: one of {EVALUATORS}")
    env = (
        {
            "HEREABOUTS_RUN_PING_EVALUATOR_IN_PROCESS": "false",
            "HEREABOUTS_PING_EVALUATOR_POLL_S": str(worker_poll_s),
            "HEREABOUTS_PING_EVALUATOR_SLOTS": str(max(1, evaluator_workers)),
        }
        if evaluator == "worker"
        else {}
    )
    companions = []
    if evaluator == "worker":
        cmd = [sys.executable, "-m", "app.cli", "worker", "--no-push"]
        for k in range(evaluator_workers):
            companions.append((f"evaluator{k}", ["nice", "-n", str(worker_nice), *cmd]))
    server = _product_server(url, port, workers, log_path)
    server.env.update(env)
    server.env.update(settings or {})
    server.companions = companions
    return server


def _product_server(url: str, port: int, workers: int, log_path: Path) -> Server:
    return Server(
        name="hereabouts",
        cmd=[
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-migrate",
        ],
        port=port,
        env={
            "HEREABOUTS_DATABASE_URL": url,
            "HEREABOUTS_RUN_WORKER_IN_PROCESS": "false",
            "HEREABOUTS_LOG_LEVEL": "WARNING",
            "HEREABOUTS_PUSH_ALLOW_LOOPBACK": "true",
            # the load generator is one IP with a few hundred devices sending far faster than
            # a phone does: the per-caller/per-IP limits would answer 429 to most of it
            "HEREABOUTS_RATE_LIMIT_ENABLED": "false",
        },
        log_path=log_path,
    )
