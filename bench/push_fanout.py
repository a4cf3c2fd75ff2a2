"""Push fan-out: outbox → encrypt → loopback fake push service, against pywebpush in the same run.

    uv run python -m bench.push_fanout [--people 1000] [--subs 2] [--per-person 3]
        [--workers 1] [--processes 0] [--fake fast|aiohttp]

1. Starts the fake push service in a separate process on a loopback port: by default
   bench/fast_push_service.py (checks every request's headers, VAPID header and aes128gcm
   framing; verifies the JWT and decrypts the first and every 50th), or `--fake aiohttp`, the
   test suite's aiohttp fake in answer-only mode (the first published runs used it).
2. Uses the embedded PostGIS (HEREABOUTS_EMBEDDED_PORT) with a scratch database
   `hereabouts_bench_push`, creates people × subs subscriptions and enqueues people × per-person
   notifications through `notifications_service.enqueue` (timed separately).
3. Hereabouts: `--workers` DeliveryWorker(s) in this process and/or `--processes` separate
   `hereabouts worker` processes drain the outbox: claim (SKIP LOCKED) → encrypt (RFC 8291) →
   POST with cached VAPID → record each attempt. Timed from start to the last row settled.
   `--workers 0 --processes 2` is the 2-core production shape: `hereabouts serve` runs 2 uvicorn
   workers, each with its in-process delivery worker.
4. pywebpush: the same number of messages via `webpush_async` with one shared aiohttp session
   and the same concurrency (encryption + a fresh VAPID signature per call, no database).
5. CPU per push from /proc, split into sender (this process + worker processes), PostgreSQL
   (postmaster and backends) and the fake push service: steadier than wall-clock on a shared
   machine. The run fails if the fake rejected any request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.core.config import Environment, Settings
from app.core.db import create_engine, create_sessionmaker
from app.notifications.vapid import (
    VapidSigner,
    b64url,
    b64url_decode,
    generate_private_key,
    private_key_pem,
    public_key_raw,
)

DB_NAME = "hereabouts_bench_push"


def _serve_fake(
    public_key: str, keys: dict[str, tuple[bytes, bytes]], kind: str, port_queue: Any
) -> None:
    async def main() -> None:
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
        if kind == "fast":
            # every request: headers, VAPID header shape and key, aes128gcm framing; the first
            # and every 50th: JWT signature + claims and decryption (bench/fast_push_service.py)
            from bench.fast_push_service import FastPushService

            fast = await FastPushService(vapid_public_key=public_key, keys=keys).start()
            port_queue.put(fast.port)
        else:
            # the strict test fake in answer-only mode (201 without checks), as in the first runs
            from tests.notifications.fake_push import FakePushService

            fake = FakePushService(vapid_public_key=public_key, decrypt=False, verify=False)
            await fake.start()
            port_queue.put(fake.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def _fake_stats(port: int) -> dict[str, Any]:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
            stats: dict[str, Any] = json.loads(answer.read())
            return stats
    except OSError:  # the aiohttp fake has no /stats
        return {}


def _subscription_keys(n: int) -> list[tuple[str, bytes, str, str]]:
    """(endpoint token, private scalar, p256dh, auth) for `n` browser subscriptions."""
    out = []
    for _ in range(n):
        key = generate_private_key()
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        auth = secrets.token_bytes(16)
        out.append(
            (
                secrets.token_urlsafe(16),
                scalar,
                b64url(public_key_raw(key.public_key())),
                b64url(auth),
            )
        )
    return out


def _postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid (the parent of our backend), if it runs on this machine."""

    async def parent_of_backend() -> int | None:
        engine = create_engine(Settings(environment=Environment.test, database_url=url), url)
        try:
            async with engine.connect() as conn:
                pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                stat = Path(f"/proc/{pid}/stat").read_text()  # while the backend is alive
                return int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        finally:
            await engine.dispose()

    return asyncio.run(parent_of_backend())


async def _prepare(
    settings: Settings,
    url: str,
    port: int,
    *,
    people: int,
    subs: int,
    per_person: int,
    keys: list[tuple[str, bytes, str, str]],
) -> tuple[list[dict[str, Any]], float]:
    from app.accounts import service as accounts_service
    from app.notifications import service as notifications_service
    from app.notifications.models import PushSubscription
    from app.notifications.schemas import NotificationPayload, Recipient

    engine = create_engine(settings, url)
    sm = create_sessionmaker(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE push_deliveries, outbox, notifications, push_subscriptions,"
                " organisations CASCADE"
            )
        )
    origin = f"http://127.0.0.1:{port}"
    sub_infos: list[dict[str, Any]] = []
    recipients: list[Recipient] = []
    async with sm() as s, s.begin():
        org = await accounts_service.create_organisation(s, "bench-town", "Bench Town")
        for _ in range(people):
            device, _ = await accounts_service.register_device(s, org.slug, "web")
            who = Recipient("device", device.id, org.id)
            recipients.append(who)
            for _ in range(subs):
                token, _scalar, p256dh, auth = keys[len(sub_infos)]
                endpoint = f"{origin}/push/{token}"
                sub_infos.append({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}})
                s.add(
                    PushSubscription(
                        organisation_id=org.id,
                        device_id=device.id,
                        endpoint=endpoint,
                        origin=origin,
                        p256dh=p256dh,
                        auth=auth,
                    )
                )
    started = time.perf_counter()
    async with sm() as s, s.begin():
        for who in recipients:
            for i in range(per_person):
                await notifications_service.enqueue(
                    s,
                    recipient=who,
                    payload=NotificationPayload(
                        title="Library open late tonight",
                        body="The central library is open until 21:00 today.",
                        url="https://council.example/library",
                        tag=f"library{i}",
                        kind="offer",
                    ),
                    settings=settings,
                )
    enqueue_s = time.perf_counter() - started
    await engine.dispose()
    return sub_infos, enqueue_s


def _worker_processes(n: int, settings: Settings, url: str, pem: bytes) -> list[Any]:
    """`n` separate `hereabouts worker` processes on the same outbox (scale-out, exactly-once)."""
    import subprocess

    env = {
        **os.environ,
        "HEREABOUTS_DATABASE_URL": url,
        "HEREABOUTS_VAPID_PRIVATE_KEY": pem.decode(),
        "HEREABOUTS_PUSH_ALLOW_LOOPBACK": "true",
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_LOG_LEVEL": "WARNING",
        "HEREABOUTS_PUSH_WORKER_CONCURRENCY": str(settings.push_worker_concurrency),
        "HEREABOUTS_PUSH_PER_ORIGIN_CONCURRENCY": str(settings.push_per_origin_concurrency),
        "HEREABOUTS_PUSH_WORKER_BATCH": str(settings.push_worker_batch),
        "HEREABOUTS_PUSH_POLL_INTERVAL_S": "0.2",
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


async def _drain(
    settings: Settings, url: str, n_workers: int, total: int, procs: list[Any] | None = None
) -> tuple[float, dict[str, int]]:
    from app.notifications.worker import DeliveryWorker

    engine = create_engine(settings, url)
    workers = [DeliveryWorker(settings, engine, name=f"bench{i}") for i in range(n_workers)]
    from bench.servers import tree_cpu_s

    proc_cpu0 = sum(tree_cpu_s(proc.pid) for proc in procs or [])  # start-up is not counted
    started = time.perf_counter()
    tasks = [asyncio.create_task(w.run()) for w in workers]
    while True:
        await asyncio.sleep(0.05)
        async with engine.connect() as conn:
            pending = (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE status='pending'"))
            ).scalar_one()
        if os.environ.get("BENCH_TRACE"):
            print(f"  t={time.perf_counter() - started:6.2f}s pending={pending}")
        if pending == 0:
            break
    elapsed = time.perf_counter() - started
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    proc_cpu = 0.0
    if procs:
        import signal

        proc_cpu = sum(tree_cpu_s(proc.pid) for proc in procs) - proc_cpu0
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY 1"))
        result = {r[0]: r[1] for r in rows}
        # exactly once: one delivery attempt per outbox row, whichever process sent it
        result["outbox_rows_sent_twice"] = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT outbox_id FROM push_deliveries"
                    " GROUP BY outbox_id HAVING count(*) > 1) d"
                )
            )
        ).scalar_one()
        result["worker_processes_cpu_ms"] = round(proc_cpu * 1000)
        result["delivery_attempts"] = (
            await conn.execute(text("SELECT count(*) FROM push_deliveries"))
        ).scalar_one()
    await engine.dispose()
    assert result.get("delivered", 0) + result.get("pending", 0) == total
    return elapsed, result


async def _pywebpush(
    pem: bytes, subject: str, sub_infos: list[dict[str, Any]], per_person: int, concurrency: int
) -> tuple[float, int]:
    import aiohttp
    from py_vapid import Vapid02
    from pywebpush import webpush_async

    vapid = Vapid02.from_pem(pem)
    payload = (
        '{"id":"00000000-0000-0000-0000-000000000000","kind":"offer",'
        '"title":"Library open late tonight",'
        '"body":"The central library is open until 21:00 today.","tag":"library0",'
        '"url":"https://council.example/library"}'
    )
    jobs = [info for info in sub_infos for _ in range(per_person)]
    sem = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(info: dict[str, Any], session: aiohttp.ClientSession) -> None:
        nonlocal ok
        async with sem:
            response = await webpush_async(
                info,
                data=payload,
                vapid_private_key=vapid,
                vapid_claims={"sub": subject},  # a fresh dict: pywebpush mutates it
                ttl=86_400,
                timeout=10,
                aiohttp_session=session,
            )
            if not isinstance(response, str) and 200 <= response.status < 300:
                ok += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(info, session) for info in jobs))
        elapsed = time.perf_counter() - started
    return elapsed, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--subs", type=int, default=2)
    parser.add_argument("--per-person", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="also run this many separate `hereabouts worker` processes on the outbox",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a SCRATCH database (its organisations are truncated); default: "
        f"{DB_NAME} in the embedded cluster on HEREABOUTS_EMBEDDED_PORT",
    )
    parser.add_argument(
        "--fake",
        choices=["fast", "aiohttp"],
        default="fast",
        help="the loopback push service: `fast` (protocol + httptools, checks every request, "
        "verifies and decrypts a sample; default) or `aiohttp` (the test fake, answer-only)",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="300 people (1,800 pushes)")
    args = parser.parse_args()
    if args.quick:
        args.people = min(args.people, 300)

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    from app.core.cluster import EmbeddedCluster
    from app.core.config import PROJECT_ROOT

    if args.database_url:
        url = args.database_url
    else:
        port = int(os.environ.get("HEREABOUTS_EMBEDDED_PORT", "54329"))
        cluster = EmbeddedCluster(data_dir=PROJECT_ROOT / ".data" / "pg", port=port)
        cluster.ensure_running()
        cluster.ensure_database(DB_NAME)
        url = cluster.url(DB_NAME)
    from alembic import command

    from app.core.ops import alembic_config

    cfg = alembic_config(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")

    key = generate_private_key()
    pem = private_key_pem(key)
    settings = Settings(
        environment=Environment.test,
        database_url=url,
        vapid_private_key=pem.decode(),
        push_allow_loopback=True,
        push_worker_concurrency=args.concurrency,
        push_per_origin_concurrency=args.concurrency,
        push_worker_batch=200,
        log_level="WARNING",
    )
    public = VapidSigner.from_settings(settings).public_key

    total = args.people * args.subs * args.per_person
    keys = _subscription_keys(args.people * args.subs)
    fake_keys = {token: (scalar, b64url_decode(auth)) for token, scalar, _p, auth in keys}
    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    server = ctx.Process(
        target=_serve_fake, args=(public, fake_keys, args.fake, port_queue), daemon=True
    )
    server.start()
    fake_port = port_queue.get(timeout=30)
    pg_pid = _postmaster_pid(url)
    from bench.servers import tree_cpu_s

    def cpu() -> tuple[float, float, float]:
        """(this process, the PostgreSQL server, the fake push service) CPU seconds so far."""
        assert server.pid is not None
        return (
            time.process_time(),
            tree_cpu_s(pg_pid) if pg_pid else 0.0,
            tree_cpu_s(server.pid),
        )

    procs: list[Any] = []
    try:
        if args.processes:
            # started (and given time to import and LISTEN) before the outbox is filled in one
            # transaction, so their start-up is not timed; they wake on its NOTIFY at commit
            procs.extend(_worker_processes(args.processes, settings, url, pem))
            time.sleep(6)
        sub_infos, enqueue_s = asyncio.run(
            _prepare(
                settings,
                url,
                fake_port,
                people=args.people,
                subs=args.subs,
                per_person=args.per_person,
                keys=keys,
            )
        )
        fake0 = _fake_stats(fake_port)
        c0 = cpu()
        drain_s, result = asyncio.run(_drain(settings, url, args.workers, total, procs))
        c1 = cpu()
        fake1 = _fake_stats(fake_port)
        py_s, py_ok = asyncio.run(
            _pywebpush(pem, settings.vapid_subject, sub_infos, args.per_person, args.concurrency)
        )
        c2 = cpu()
        fake2 = _fake_stats(fake_port)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        server.terminate()
        server.join(5)

    def per_push(before: tuple[float, ...], after: tuple[float, ...]) -> list[int]:
        return [round((b - a) / total * 1e6) for a, b in zip(before, after, strict=True)]

    def fake_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        keys_ = ("requests", "created", "verified_jwt", "decrypted", "violations")
        delta: dict[str, Any] = {k: after.get(k, 0) - before.get(k, 0) for k in keys_}
        if after.get("last_violation"):
            delta["last_violation"] = after["last_violation"]
        return delta

    worker_cpu_s = result["worker_processes_cpu_ms"] / 1000.0
    ours_cpu = per_push(c0, c1)  # [sender, postgres, fake]
    ours_cpu[0] += round(worker_cpu_s / total * 1e6)
    theirs_cpu = per_push(c1, c2)
    ours_fake = fake_delta(fake0, fake1)
    theirs_fake = fake_delta(fake1, fake2)
    ours = total / drain_s
    theirs = total / py_s
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}  fake: {args.fake}")
    print(
        f"dataset: {args.people} people × {args.subs} subscriptions × {args.per_person} "
        f"notifications = {total} pushes; concurrency {args.concurrency}"
    )
    print(f"enqueue (service.enqueue, one transaction): {total / enqueue_s:,.0f} outbox rows/s")
    print(
        f"hereabouts outbox → worker ×{args.workers} + {args.processes} processes → fake push: "
        f"{ours:,.0f} pushes/s ({drain_s:.2f} s, {result})"
    )
    print(
        f"pywebpush webpush_async, shared aiohttp session: {theirs:,.0f} pushes/s "
        f"({py_s:.2f} s, {py_ok} ok)"
    )
    print(
        "CPU µs per push [sender, PostgreSQL, fake push service]: "
        f"hereabouts {ours_cpu} = {sum(ours_cpu)}, pywebpush {theirs_cpu} = {sum(theirs_cpu)}"
    )
    if ours_fake:
        print(f"fake push service saw: hereabouts {ours_fake}; pywebpush {theirs_fake}")
    print(f"ratio: {ours / theirs:.2f}×  load average: {os.getloadavg()[0]:.2f}")
    violations = ours_fake.get("violations", 0) + theirs_fake.get("violations", 0)
    if args.json:
        figures = {
            "pushes": total,
            "people": args.people,
            "subscriptions_per_person": args.subs,
            "notifications_per_person": args.per_person,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "worker_processes": args.processes,
            "enqueue_rows_per_s": round(total / enqueue_s),
            "hereabouts_per_s": round(ours),
            "hereabouts_seconds": round(drain_s, 3),
            "hereabouts_outbox": result,
            "pywebpush_per_s": round(theirs),
            "pywebpush_seconds": round(py_s, 3),
            "pywebpush_ok": py_ok,
            "cpu_us_per_push_hereabouts": ours_cpu[0],
            "cpu_us_per_push_pywebpush": theirs_cpu[0],
            "cpu_us_per_push_sender_postgres_fake": {
                "hereabouts": ours_cpu,
                "pywebpush": theirs_cpu,
            },
            "fake": args.fake,
            "fake_push_service_saw": {"hereabouts": ours_fake, "pywebpush": theirs_fake},
            "ratio": round(ours / theirs, 3),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "target_met": ours >= 3000 and ours / theirs >= 1.5,
            "note": "sender CPU = this process plus the `hereabouts worker` processes (after "
            "their start-up); PostgreSQL = the postmaster and its backends",
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if violations:
        raise SystemExit(f"the fake push service rejected {violations} requests")


if __name__ == "__main__":
    main()
