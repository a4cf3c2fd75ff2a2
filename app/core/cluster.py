"""The embedded PostgreSQL + PostGIS cluster used when no database URL is configured.

`initdb`/`pg_ctl` refuse to run as root, so when we are root the cluster is owned and run by an
unprivileged system user (``postgres`` by default). The cluster listens on loopback only, on a
non-default port, and keeps its data under the project's ``.data/`` directory across restarts.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("17", "16", "15", "14", "13")


class ClusterError(RuntimeError):
    """The embedded database cannot be provisioned; the message says what to install or fix."""


def _is_root() -> bool:
    return os.geteuid() == 0


def find_pg_bindir() -> Path | None:
    """Return the newest PostgreSQL server bin directory on this machine, if any."""
    override = os.environ.get("HEREABOUTS_PG_BINDIR")
    if override:
        return Path(override)
    for version in SUPPORTED_VERSIONS:
        candidate = Path(f"/usr/lib/postgresql/{version}/bin")
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    return None


def _pg_version(bindir: Path) -> str:
    out = subprocess.run(
        [
            str(bindir / "pg_config")
            if (bindir / "pg_config").exists()
            else str(bindir / "postgres"),
            "--version",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "postgres (PostgreSQL) 15.18 (Debian ...)" -> "15"
    for token in out.split():
        if token[:1].isdigit():
            return token.split(".")[0]
    raise ClusterError(f"cannot tell the PostgreSQL version from {out!r}")


def postgis_available(version: str) -> bool:
    return bool(glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control"))


def _apt_install(packages: list[str]) -> None:
    logger.warning("installing %s with apt-get (one-off)", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def ensure_server_installed() -> Path:
    """Find PostgreSQL + PostGIS; install them with apt when root on Debian/Ubuntu, else explain."""
    bindir = find_pg_bindir()
    can_apt = _is_root() and shutil.which("apt-get") is not None
    if bindir is None:
        if not can_apt:
            raise ClusterError(
                "PostgreSQL server binaries not found. Install them, e.g. "
                "`sudo apt-get install postgresql postgresql-15-postgis-3`, "
                "or set HEREABOUTS_DATABASE_URL to an existing PostGIS database."
            )
        _apt_install(["postgresql"])
        bindir = find_pg_bindir()
        if bindir is None:
            raise ClusterError("apt-get installed postgresql but no initdb was found")
    version = _pg_version(bindir)
    if not postgis_available(version):
        package = f"postgresql-{version}-postgis-3"
        if not can_apt:
            raise ClusterError(
                f"PostGIS for PostgreSQL {version} is not installed. Install it, e.g. "
                f"`sudo apt-get install {package}`, "
                "or set HEREABOUTS_DATABASE_URL to an existing PostGIS database."
            )
        _apt_install([package])
        if not postgis_available(version):
            raise ClusterError(f"apt-get installed {package} but postgis.control is missing")
    return bindir


@dataclass
class EmbeddedCluster:
    """A project-local PostgreSQL cluster: `ensure_running()` is idempotent, `stop()` is clean."""

    data_dir: Path
    port: int = 54329
    user: str = "hereabouts"
    run_as: str = "postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = "hereabouts", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    # -- process helpers -------------------------------------------------------------------
    def _cmd(self, args: list[str]) -> list[str]:
        if _is_root():
            return ["runuser", "-u", self.run_as, "--", *args]
        return args

    def _run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            self._cmd(args), capture_output=True, text=True, cwd="/", **kwargs
        )

    def _chown(self, path: Path) -> None:
        if _is_root():
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
            self._chown(path)
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        if _is_root():
            # the unprivileged owner must be able to reach its directories
            for parent in [self.data_dir, *self.data_dir.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)

    def _port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    # -- lifecycle -------------------------------------------------------------------------
    def is_running(self, bindir: Path | None = None) -> bool:
        bindir = bindir or find_pg_bindir()
        if bindir is None or not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run([str(bindir / "pg_ctl"), "status", "-D", str(self.pgdata)]).returncode == 0

    def ensure_running(self) -> str:
        """Provision (first time) and start the cluster; return its SQLAlchemy URL."""
        bindir = ensure_server_installed()
        self._ensure_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            logger.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
            result = self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
            if result.returncode != 0:
                raise ClusterError(f"initdb failed: {result.stderr.strip()}")
            conf = self.pgdata / "postgresql.conf"
            with conf.open("a") as fh:
                fh.write(
                    "\n# hereabouts embedded defaults\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "max_connections = 200\n"
                    "shared_buffers = 256MB\n"
                    "fsync = on\n"
                    "synchronous_commit = off\n"
                    "log_min_messages = warning\n"
                )
        if not self.is_running(bindir):
            if self._port_open():
                raise ClusterError(
                    f"port {self.port} on 127.0.0.1 is taken by another process; "
                    "choose another port (HEREABOUTS_EMBEDDED_PORT, or "
                    "HEREABOUTS_TEST_PG_PORT for the tests)"
                )
            result = self._run(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {self.port} -k {self.socket_dir}",
                ]
            )
            if result.returncode != 0:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise ClusterError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        self._wait_ready()
        return self.url()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._port_open():
                return
            time.sleep(0.1)
        raise ClusterError(f"embedded PostgreSQL did not open port {self.port}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        bindir = find_pg_bindir()
        assert bindir is not None
        psql = bindir / "psql" if (bindir / "psql").exists() else Path("psql")
        result = self._run(
            [
                str(psql),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ]
        )
        if result.returncode != 0:
            raise ClusterError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ensure_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, mode: str = "fast") -> None:
        bindir = find_pg_bindir()
        if bindir is None or not self.is_running(bindir):
            return
        self._run([str(bindir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.pgdata)])


def default_cluster() -> EmbeddedCluster:
    from app.core.config import get_settings

    settings = get_settings()
    return EmbeddedCluster(data_dir=settings.data_dir / "pg", port=settings.embedded_port)
