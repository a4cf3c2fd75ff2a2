"""The embedded cluster: durable commit, a password for every connection, old clusters migrated."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from app.core.cluster import (
    LEGACY_BLOCK_START,
    MANAGED_HBA,
    ClusterError,
    EmbeddedCluster,
    find_pg_bindir,
)
from app.core.config import Settings
from app.core.db import create_engine
from tests.live import free_port


def _psql_without_password(cluster: EmbeddedCluster, sql: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    bindir = find_pg_bindir()
    assert bindir is not None
    return subprocess.run(
        [str(bindir / "psql"), "-w", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", cluster.user, "-d", "postgres", "-Atc", sql],
        capture_output=True, text=True, env=env,
    )  # fmt: skip


def test_the_test_cluster_needs_its_password_and_keeps_it_private(
    pg_cluster: EmbeddedCluster,
) -> None:
    refused = _psql_without_password(pg_cluster, "SELECT 1")
    assert refused.returncode != 0
    assert "password" in refused.stderr
    assert pg_cluster.psql("SELECT 1") == "1"
    assert pg_cluster.password_file.stat().st_mode & 0o777 == 0o600
    assert pg_cluster.socket_dir.stat().st_mode & 0o777 == 0o700
    assert pg_cluster.psql("SHOW password_encryption") == "scram-sha-256"
    hba = (pg_cluster.pgdata / "pg_hba.conf").read_text()
    assert "trust" not in hba.replace("#", "\n#").split("#")[0]
    assert hba == MANAGED_HBA


async def test_every_commit_is_durable_by_default(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            value = (await conn.execute(text("SHOW synchronous_commit"))).scalar_one()
            fsync = (await conn.execute(text("SHOW fsync"))).scalar_one()
    finally:
        await engine.dispose()
    assert (value, fsync) == ("on", "on")


@pytest.mark.slow
def test_a_trust_cluster_with_asynchronous_commit_is_migrated_on_start(tmp_path: Path) -> None:
    """A `.data` cluster made by an older version: --auth=trust, synchronous_commit = off."""
    cluster = EmbeddedCluster(data_dir=tmp_path / "pg", port=free_port())
    bindir = find_pg_bindir()
    assert bindir is not None
    cluster._ensure_dirs()
    made = cluster._run(
        [str(bindir / "initdb"), "-D", str(cluster.pgdata), "-U", cluster.user, "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8"]
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with (cluster.pgdata / "postgresql.conf").open("a") as fh:
        fh.write(
            f"\n{LEGACY_BLOCK_START}\nlisten_addresses = '127.0.0.1'\nmax_connections = 200\n"
            "shared_buffers = 256MB\nfsync = on\nsynchronous_commit = off\n"
            "log_min_messages = warning\n"
        )
    started = cluster._run(
        [str(bindir / "pg_ctl"), "start", "-w", "-D", str(cluster.pgdata), "-l",
         str(cluster.log_file), "-o", f"-p {cluster.port} -k {cluster.socket_dir}"]
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        # the old cluster: anyone local gets in without a password, commits are asynchronous
        old = _psql_without_password(
            cluster, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x'); "
            "SHOW synchronous_commit"
        )  # fmt: skip
        assert old.stdout.split()[-1] == "off", old.stderr
        assert not cluster.password_file.exists()

        cluster.ensure_running()  # what the next serve / db command does

        assert cluster.password_file.stat().st_mode & 0o777 == 0o600
        assert _psql_without_password(cluster, "SELECT 1").returncode != 0
        assert cluster.psql("SELECT v FROM kept") == "x"
        assert cluster.psql("SHOW synchronous_commit") == "on"
        assert (cluster.pgdata / "pg_hba.conf").read_text() == MANAGED_HBA
        conf = (cluster.pgdata / "postgresql.conf").read_text()
        assert LEGACY_BLOCK_START not in conf
        assert "synchronous_commit = off" not in conf
        cluster.stop()
        # an administrator's own pg_hba.conf line (no trust) is kept across starts
        with (cluster.pgdata / "pg_hba.conf").open("a") as fh:
            fh.write("host    all  all  10.1.2.3/32  scram-sha-256\n")
        cluster.ensure_running()  # and after a restart, from the files alone
        assert cluster.started_here
        assert cluster.psql("SHOW synchronous_commit") == "on"
        assert _psql_without_password(cluster, "SELECT 1").returncode != 0
        assert "10.1.2.3/32" in (cluster.pgdata / "pg_hba.conf").read_text()

        # a lost password file is named, not replaced by one the cluster does not know
        cluster.stop()
        cluster.password_file.unlink()
        with pytest.raises(ClusterError, match="password is missing"):
            cluster.ensure_running()
        assert not cluster.password_file.exists()
    finally:
        cluster.stop(mode="immediate")
