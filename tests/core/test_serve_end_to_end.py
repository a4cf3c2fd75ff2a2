"""`hereabouts serve --demo` as a user runs it: its own embedded PostGIS, real uvicorn, real HTTP.

Also the outage drill: stop the database under the running service, see 503s, and see `serve`
start it again by itself and the service recover without a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from tests.live import free_port

pytestmark = pytest.mark.slow


def _wait(url: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered: {last}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EmbeddedCluster]]:
    data_dir = PROJECT_ROOT / ".data" / "test-serve"
    pg_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATA_DIR": str(data_dir),
        "HEREABOUTS_EMBEDDED_PORT": str(pg_port),
        "HEREABOUTS_WORKERS": "1",
        "HEREABOUTS_LOG_LEVEL": "WARNING",
    }
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--demo", "--port", str(http_port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{http_port}"
    cluster = EmbeddedCluster(data_dir=data_dir / "pg", port=pg_port)
    try:
        _wait(base + "/healthz", timeout=120)
        yield base, cluster
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        cluster.stop(mode="immediate")
        if proc.returncode not in (0, -2, None):
            sys.stderr.write(Path(log).read_text()[-3000:])


def test_make_run_serves_docs_ready_and_demo_staff_can_log_in(
    served: tuple[str, EmbeddedCluster],
) -> None:
    base, _ = served
    assert httpx.get(base + "/docs").status_code == 200
    assert httpx.get(base + "/readyz").status_code == 200
    login = httpx.post(
        base + "/v1/auth/token",
        data={"username": "editor@demo-town.example", "password": "demo-editor-pass"},
    )
    assert login.status_code == 200, login.text
    me = httpx.get(
        base + "/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["role"] == "editor"


def test_database_outage_gives_503_and_serve_restarts_the_cluster(
    served: tuple[str, EmbeddedCluster],
) -> None:
    base, cluster = served
    token = httpx.post(
        base + "/v1/auth/token",
        data={"username": "admin@demo-town.example", "password": "demo-admin-pass"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(base + "/v1/users", headers=headers).status_code == 200

    cluster.stop(mode="immediate")
    ready = httpx.get(base + "/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    down = httpx.get(base + "/v1/users", headers=headers, timeout=15)
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == "application/problem+json"
    assert httpx.get(base + "/healthz").status_code == 200

    # serve restarts its embedded cluster by itself (with backoff), no one else does
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(base + "/readyz", timeout=10).status_code == 200:
            break
        time.sleep(0.5)
    assert cluster.postmaster_pid() is not None
    assert httpx.get(base + "/readyz").status_code == 200
    assert httpx.get(base + "/v1/users", headers=headers).status_code == 200
