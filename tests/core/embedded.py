"""`hereabouts serve` on data directories of its own: real processes, real embedded clusters.

Initialising and migrating a cluster takes several seconds, so it is done once per test run
(`template_data_dir`); each test copies that stopped, migrated data directory (``cp -a`` keeps
the unprivileged owner) and gives the copy its own PostgreSQL and HTTP ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from tests.live import free_port

CLI = [sys.executable, "-m", "app.cli"]


def base_env(data_dir: Path, pg_port: int) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATA_DIR": str(data_dir),
        "HEREABOUTS_EMBEDDED_PORT": str(pg_port),
        "HEREABOUTS_WORKERS": "1",
        "HEREABOUTS_LOG_LEVEL": "WARNING",
        "HEREABOUTS_RATE_LIMIT_ENABLED": "false",
        "HEREABOUTS_JWT_SECRET": "embedded-serve-secret-" + "z" * 32,
    }


def build_template(path: Path) -> Path:
    """A data directory with an initialised, migrated and stopped cluster, with the demo town."""
    env = base_env(path, free_port())
    subprocess.run(
        [*CLI, "demo", "load"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True
    )
    subprocess.run([*CLI, "db", "stop"], cwd=PROJECT_ROOT, env=env, check=True)
    return path


@dataclass
class DataDir:
    path: Path
    pg_port: int
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def cluster(self) -> EmbeddedCluster:
        return EmbeddedCluster(data_dir=self.path / "pg", port=self.pg_port)

    def cluster_running(self) -> bool:
        return self.cluster.postmaster_pid() is not None

    def lock_info(self) -> dict[str, Any]:
        raw = (self.path / "hereabouts.lock").read_text()
        return json.loads(raw) if raw.strip() else {}

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args],
            cwd=PROJECT_ROOT,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, http_port: int | None = None, *extra: str, **env: str) -> Serve:
        port = http_port or free_port()
        log = self.path.parent / f"{self.path.name}-serve-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(port), *extra],
                cwd=PROJECT_ROOT,
                env=self.env | env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return Serve(proc, f"http://127.0.0.1:{port}", log)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.cluster.stop(mode="immediate")


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def ready(self, timeout: float = 90.0) -> Serve:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}): {self.output()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve never became ready: {self.output()}")

    def readyz(self) -> int:
        return httpx.get(self.base + "/readyz", timeout=5).status_code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def copy_data_dir(template: Path, dest: Path) -> DataDir:
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
    (dest / "hereabouts.lock").unlink(missing_ok=True)
    pg_port = free_port()
    return DataDir(dest, pg_port, base_env(dest, pg_port))
