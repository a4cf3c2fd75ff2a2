"""A real `hereabouts serve` process on a free port with its own database, for end-to-end tests.

Same pattern as the Schemathesis test: the server commits for real, so it gets a database of its
own that is dropped afterwards and never touches the rolled-back per-test transactions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from tests.conftest import fresh_database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base: str
    admin_email: str
    admin_password: str
    organisation: str
    env: dict[str, str] = field(default_factory=dict)

    def create_admin(self, email: str, organisation: str) -> tuple[str, str]:
        """A new organisation with its own admin (the CLI's create-admin); returns the login."""
        subprocess.run(
            [sys.executable, "-m", "app.cli", "users", "create-admin"]
            + ["--email", email, "--organisation", organisation],
            cwd=PROJECT_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        return email, self.admin_password

    def token(self, email: str, password: str) -> str:
        res = httpx.post(
            self.base + "/v1/auth/token", data={"username": email, "password": password}
        )
        res.raise_for_status()
        return str(res.json()["access_token"])

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(self.admin_email, self.admin_password)}"}

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        res = httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)
        if res.status_code >= 400:
            raise AssertionError(f"{method} {path} → {res.status_code}: {res.text}")
        return res.json() if res.content else None


def create_admin(url: str, email: str, organisation: str, password: str) -> None:
    """What `hereabouts users create-admin` does, in this process (no interpreter to start and
    no app to import again, seconds on a busy machine). The command itself is run by
    `LiveServer.create_admin` (tests/web) and tests/core/test_data_dir_ownership.py."""
    from app.accounts import service
    from app.accounts.models import Role

    async def create() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with AsyncSession(engine) as session:
                org = await service.get_or_create_organisation(session, organisation, organisation)
                await service.create_user(
                    session,
                    org.id,
                    email=email,
                    full_name="Administrator",
                    password=password,
                    role=Role.admin,
                )
                await session.commit()
        finally:
            await engine.dispose()

    # its own thread and event loop: callers may be inside the test session's running loop
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()


@contextmanager
def live_server(
    pg_cluster: EmbeddedCluster,
    name: str,
    *,
    organisation: str = "live-town",
    admin: tuple[str, str] = ("admin@live-town.example", "live-admin-password"),
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Start `hereabouts serve` (1 worker, no in-process delivery worker) on a fresh database."""
    db_name = f"{name}_{os.getpid()}"
    url = fresh_database(pg_cluster, db_name)  # migrated: create-admin's upgrade has nothing to do
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATABASE_URL": url,
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_RATE_LIMIT_ENABLED": "false",
        "HEREABOUTS_RUN_WORKER_IN_PROCESS": "false",
        "HEREABOUTS_PUSH_ALLOW_LOOPBACK": "true",
        "HEREABOUTS_LOG_LEVEL": "ERROR",
        "HEREABOUTS_JWT_SECRET": "live-server-secret-" + "y" * 32,
        "HEREABOUTS_ADMIN_PASSWORD": admin[1],
        **(extra_env or {}),
    }
    cli = [sys.executable, "-m", "app.cli"]
    create_admin(url, admin[0], organisation, admin[1])
    proc = subprocess.Popen(
        [*cli, "serve", "--no-migrate", "--port", str(port), "--workers", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"live server did not start (exit code {proc.poll()})")
            time.sleep(0.3)
        yield LiveServer(
            base=base,
            admin_email=admin[0],
            admin_password=admin[1],
            organisation=organisation,
            env=env,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pg_cluster.drop_database(db_name)
