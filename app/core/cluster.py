"""The embedded PostgreSQL + PostGIS cluster used when no database URL is configured.

`initdb`/`pg_ctl` refuse to run as root, so when we are root the cluster is owned and run by an
unprivileged system user (``postgres`` by default). The cluster listens on loopback only, on a
non-default port, and keeps its data under the project's ``.data/`` directory across restarts.

Access needs a password (scram-sha-256, for TCP and the unix socket alike): it is generated at
first start into ``<data_dir>/password`` (mode 0600, readable by the service user only), and the
socket directory ``<data_dir>/run`` is mode 0700. Clusters made before this (``--auth=trust``) are
given the password and the new ``pg_hba.conf`` on their next start. The server settings this
project manages live in ``pgdata/hereabouts.conf``, included last by ``postgresql.conf`` and
rewritten at every start, so a changed default (durable commit) reaches existing clusters too.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("17", "16", "15", "14", "13")

# Server settings managed by this project (pgdata/hereabouts.conf, rewritten at every start).
# Commits are durable: `synchronous_commit` is left at its default (on), so a 2xx answer means the
# row is on disk (docs/operations.md).
MANAGED_CONF = """# Written by Hereabouts at every start of the embedded cluster: edits are lost.
# Put your own settings in postgresql.auto.conf (ALTER SYSTEM) instead.
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
unix_socket_permissions = 0700
log_min_messages = warning
"""
MANAGED_HBA = """# Written by Hereabouts: every connection needs the password in <data_dir>/password
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
local   replication all               scram-sha-256
host    replication all 127.0.0.1/32  scram-sha-256
"""
INCLUDE_LINE = "include_if_exists = 'hereabouts.conf'"
# what older versions appended to postgresql.conf (asynchronous commit among it)
LEGACY_BLOCK_START = "# hereabouts embedded defaults"


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
    # settings appended to the managed ones (a Citus node's, app/core/citus.py), and environment
    # variables for the server process (PGPASSFILE for a node's connections to its peers)
    extra_conf: str = ""
    server_env: dict[str, str] = field(default_factory=dict)
    # set by ensure_running(): True when this call started the server (it was not running)
    started_here: bool = field(default=False, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    def password(self) -> str:
        """The role's generated password (created, mode 0600, on first use)."""
        path = self.password_file
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip()

    def url(self, database: str = "hereabouts", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}:{self.password()}@127.0.0.1:{self.port}/{database}"

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

    def _write_owned(self, path: Path, text: str) -> None:
        """Write a file inside pgdata, owned by the cluster's user, mode 0600."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        self._chown(tmp)
        tmp.replace(path)

    # -- configuration ---------------------------------------------------------------------
    def _hba_trusts(self) -> bool:
        """Whether pg_hba.conf lets anyone in without a password (a cluster from before)."""
        hba = self.pgdata / "pg_hba.conf"
        if not hba.exists():
            return False
        for line in hba.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 4 and "trust" in fields[3:]:
                return True
        return False

    def _configure(self) -> None:
        """Write the managed settings and make postgresql.conf include them, last."""
        self._write_owned(self.pgdata / "hereabouts.conf", MANAGED_CONF + self.extra_conf)
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        if LEGACY_BLOCK_START in text:  # the block older versions appended (asynchronous commit)
            text = text[: text.index(LEGACY_BLOCK_START)].rstrip("\n") + "\n"
        if INCLUDE_LINE not in text:
            text = (
                text.rstrip("\n")
                + f"\n\n# Hereabouts' managed settings, last so they win\n{INCLUDE_LINE}\n"
            )
        if text != conf.read_text():
            self._write_owned(conf, text)

    def _secure_legacy_cluster(self) -> None:
        """A cluster made with `--auth=trust`: set the role's password, then require it."""
        logger.warning(
            "embedded PostgreSQL in %s accepted any local user without a password: "
            "setting a generated password (%s) and requiring scram-sha-256",
            self.pgdata,
            self.password_file,
        )
        # still trust until pg_hba.conf is replaced below, so psql needs no password here
        self._psql_trust(
            "SET password_encryption = 'scram-sha-256'; "
            f"ALTER ROLE \"{self.user}\" PASSWORD '{self.password()}'"
        )
        self._write_owned(self.pgdata / "pg_hba.conf", MANAGED_HBA)
        self._psql_trust("SELECT pg_reload_conf()")

    # -- lifecycle -------------------------------------------------------------------------
    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid from postmaster.pid, or None (cheap: no subprocess)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, owned by another user
            return pid
        return pid

    def is_running(self, bindir: Path | None = None) -> bool:
        bindir = bindir or find_pg_bindir()
        if bindir is None or not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run([str(bindir / "pg_ctl"), "status", "-D", str(self.pgdata)]).returncode == 0

    def ensure_running(self) -> str:
        """Provision (first time) and start the cluster; return its SQLAlchemy URL.

        `started_here` tells the caller whether this call started the server.
        """
        bindir = ensure_server_installed()
        self._ensure_dirs()
        initialised = (self.pgdata / "PG_VERSION").exists()
        if initialised and not self.password_file.exists() and not self._hba_trusts():
            raise ClusterError(
                f"{self.password_file} is missing, and the cluster in {self.pgdata} needs it. "
                "Put the file back, or have a new password set: add the line "
                "`host all all 127.0.0.1/32 trust` at the top of pg_hba.conf there and start "
                "again (Hereabouts then sets a new password and rewrites pg_hba.conf)."
            )
        password = self.password()
        if not (self.pgdata / "PG_VERSION").exists():
            logger.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
            # initdb reads the password from a file its (unprivileged) user can open: a copy in
            # the 0700 socket directory, removed straight after
            pwfile = self.socket_dir / "initdb.pw"
            self._write_owned(pwfile, password + "\n")
            try:
                result = self._run(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        self.user,
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        f"--pwfile={pwfile}",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if result.returncode != 0:
                raise ClusterError(f"initdb failed: {result.stderr.strip()}")
            self._write_owned(self.pgdata / "pg_hba.conf", MANAGED_HBA)
        self._configure()
        self.started_here = False
        if self.is_running(bindir):
            # running already: reload so that changed managed settings apply
            self._reload(bindir)
        else:
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
                ],
                env={**os.environ, **self.server_env},
            )
            if result.returncode != 0:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise ClusterError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
            self.started_here = True
        self._wait_ready()
        if self._hba_trusts():
            self._secure_legacy_cluster()
        return self.url()

    def _reload(self, bindir: Path) -> None:
        self._run([str(bindir / "pg_ctl"), "reload", "-s", "-D", str(self.pgdata)])

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._port_open():
                return
            time.sleep(0.1)
        raise ClusterError(f"embedded PostgreSQL did not open port {self.port}")

    def _psql_args(self, sql: str, database: str) -> list[str]:
        bindir = find_pg_bindir()
        assert bindir is not None
        psql = bindir / "psql" if (bindir / "psql").exists() else Path("psql")
        return [
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

    def _psql_trust(self, sql: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = self._run(self._psql_args(sql, "postgres"), env=env)
        if result.returncode != 0:
            raise ClusterError(f"psql failed: {result.stderr.strip()}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement as the cluster's role (a client: no need to switch user)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password()
        result = subprocess.run(
            self._psql_args(sql, database), capture_output=True, text=True, cwd="/", env=env
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


class ClusterSupervisor:
    """Restart the embedded cluster, with backoff, whenever it stops under a running `serve`.

    A thread of the `serve` process: every `poll_s` it checks that the postmaster in
    postmaster.pid is alive (no subprocess). When it is not, it waits the current backoff
    (`backoff_start_s`, doubling up to `backoff_cap_s`) and starts it again. Meanwhile the API
    answers 503 (`/readyz` included) and reconnects by itself once the database is back.
    """

    def __init__(
        self,
        cluster: EmbeddedCluster,
        on_restart: Callable[[], None] = lambda: None,
        *,
        poll_s: float = 1.0,
        backoff_start_s: float = 1.0,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.on_restart = on_restart
        self.poll_s = poll_s
        self.backoff_start_s = backoff_start_s
        self.backoff_cap_s = backoff_cap_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (waits for a restart under way to finish)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        delay = self.backoff_start_s
        while not self._stop.wait(self.poll_s):
            if self.cluster.postmaster_pid() is not None:
                delay = self.backoff_start_s
                continue
            logger.warning("embedded PostgreSQL is not running: restarting it in %.0f s", delay)
            if self._stop.wait(delay):
                return
            try:
                self.cluster.ensure_running()
            except Exception:  # noqa: BLE001 - keep trying, with a longer wait
                logger.exception("restarting embedded PostgreSQL failed")
                delay = min(delay * 2, self.backoff_cap_s)
                continue
            self.restarts += 1
            logger.warning("embedded PostgreSQL restarted")
            self.on_restart()
            delay = self.backoff_start_s


def default_cluster() -> EmbeddedCluster:
    from app.core.config import get_settings

    settings = get_settings()
    return EmbeddedCluster(data_dir=settings.data_dir / "pg", port=settings.embedded_port)
