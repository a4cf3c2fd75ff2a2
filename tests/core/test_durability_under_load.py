"""Acknowledged pings survive: a SIGTERM under load, and PostgreSQL crashing under load.

A real `hereabouts serve` (embedded cluster, demo town) takes ping batches from several devices
at once. Every batch answered 200 is "acknowledged"; afterwards every acknowledged ping must be in
the database. Errors while the database is down must be quick 503s, never hangs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.core.embedded import DataDir, Serve

pytestmark = pytest.mark.slow

DEVICES = 6
BATCH = 10
HANG_S = 20.0  # a request taking longer than this is a hang


@dataclass
class Load:
    """Devices posting ping batches in a loop until stopped; what was acknowledged, by id."""

    base: str
    tokens: list[str]
    acknowledged: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    slowest_s: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, index: int) -> None:
        token = self.tokens[index]
        sent = 0
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=HANG_S + 10
        ) as client:
            while not self.stop.is_set():
                ids = [f"d{index}-{sent + i}" for i in range(BATCH)]
                sent += BATCH
                now = datetime.now(UTC).isoformat()
                body = {
                    "pings": [
                        {"id": i, "lon": -2.011 + n * 1e-5, "lat": 53.743, "accuracy_m": 10,
                         "recorded_at": now}
                        for n, i in enumerate(ids)
                    ]
                }  # fmt: skip
                began = time.monotonic()
                try:
                    res = client.post("/v1/pings", json=body)
                except httpx.HTTPError:
                    with self.lock:
                        self.transport_errors += 1
                        self.slowest_s = max(self.slowest_s, time.monotonic() - began)
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.slowest_s = max(self.slowest_s, time.monotonic() - began)
                    self.statuses[res.status_code] = self.statuses.get(res.status_code, 0) + 1
                    if res.status_code == 200:
                        assert res.json()["accepted"] + res.json()["duplicates"] == BATCH
                        self.acknowledged.update(f"{token}:{i}" for i in ids)
                if res.status_code == 503:
                    time.sleep(0.1)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(i,)) for i in range(len(self.tokens))]
        for thread in threads:
            thread.start()
        return threads

    def acks(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def _devices(base: str) -> list[str]:
    tokens = []
    for _ in range(DEVICES):
        res = httpx.post(base + "/v1/devices", json={"organisation": "demo-town"}, timeout=30)
        assert res.status_code in (200, 201), res.text
        token = res.json()["token"]
        httpx.put(
            base + "/v1/me/background-location",
            json={"enabled": True},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).raise_for_status()
        tokens.append(token)
    return tokens


def _stored(d: DataDir, tokens: list[str]) -> set[str]:
    """`token:client id` of every stored ping of these devices (read straight from PostgreSQL)."""
    import hashlib

    by_hash = {hashlib.sha256(t.encode()).hexdigest(): t for t in tokens}
    with psycopg.connect(
        host="127.0.0.1", port=d.pg_port, user="hereabouts", dbname="hereabouts",
        password=d.cluster.password(),
    ) as conn:  # fmt: skip
        rows = conn.execute(
            "SELECT d.token_hash, p.client_id FROM pings p JOIN devices d ON d.id = p.subject_id"
        ).fetchall()
    return {f"{by_hash[str(h)]}:{c}" for h, c in rows if str(h) in by_hash}


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_sigterm_under_load_commits_every_acknowledged_ping(
    data_dirs: Callable[[], DataDir],
) -> None:
    d = data_dirs()
    served: Serve = d.start().ready()
    load = Load(served.base, _devices(served.base))
    threads = load.start()
    try:
        _wait_for(lambda: load.acks() >= 200, 60, "pings to be acknowledged")
        assert served.stop(signal.SIGTERM) == 0
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    assert not d.cluster_running()  # serve stopped its cluster after the last commit
    assert set(load.statuses) == {200}, load.statuses  # refused connections, never a 5xx
    d.cluster.ensure_running()  # the restart
    stored = _stored(d, load.tokens)
    missing = load.acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged pings lost, e.g. {sorted(missing)[:3]}"
    assert len(load.acknowledged) >= 200


def test_postgresql_crash_under_load_loses_no_acknowledged_ping_and_answers_503(
    data_dirs: Callable[[], DataDir],
) -> None:
    d = data_dirs()
    served = d.start().ready()
    load = Load(served.base, _devices(served.base))
    threads = load.start()
    try:
        _wait_for(lambda: load.acks() >= 200, 60, "pings to be acknowledged")
        d.cluster.stop(mode="immediate")  # a crash: no checkpoint, recovery from the WAL
        _wait_for(lambda: load.statuses.get(503, 0) > 0, 30, "503 answers")
        # serve restarts the cluster by itself; then the load goes through again
        _wait_for(lambda: served.readyz() == 200, 60, "serve to be ready again")
        acked_after = load.acks() + 100
        _wait_for(lambda: load.acks() >= acked_after, 60, "pings after the restart")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert load.slowest_s < HANG_S, f"a request took {load.slowest_s:.1f} s"
    stored = _stored(d, load.tokens)
    missing = load.acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged pings lost, e.g. {sorted(missing)[:3]}"
    assert served.stop() == 0
