"""`hereabouts db backup` / `db restore`: a round trip keeps every table exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from tests.conftest import migrated_database

pytestmark = pytest.mark.slow


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATABASE_URL": url,
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
    )


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Every table of the public schema (partitions included): row count and a digest of rows."""
    with _connect(url) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        out: dict[str, tuple[int, str]] = {}
        for table in tables:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f'FROM public."{table}" t'
            ).fetchone()
            assert row is not None
            out[table] = (int(str(row[0])), str(row[1]))
    return out


def test_backup_and_restore_round_trip_keeps_every_table(
    pg_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    dump = tmp_path / "hereabouts.dump"
    restored_name = f"hereabouts_restored_{os.getpid()}"
    with migrated_database(pg_cluster, "hereabouts_backup") as url:
        walked = _cli(url, "demo", "walk")  # the demo town, then a walk: pings, events, outbox
        assert walked.returncode == 0, walked.stderr
        before = snapshot(url)
        assert before["pings"][0] > 0 or any(
            count for name, (count, _) in before.items() if name.startswith("pings_p")
        )
        assert sum(1 for count, _ in before.values() if count) >= 10

        backup = _cli(url, "db", "backup", str(dump))
        assert backup.returncode == 0, backup.stderr
        assert dump.stat().st_mode & 0o777 == 0o600
        assert not dump.with_name(dump.name + ".partial").exists()

        with _connect(url) as conn:  # lose and change data after the backup
            conn.execute("DELETE FROM pings")
            conn.execute("UPDATE organisations SET name = 'changed since the backup'")
        assert snapshot(url) != before

        broken = tmp_path / "broken.dump"
        broken.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
        failed = _cli(url, "db", "restore", str(broken))
        assert failed.returncode == 1
        assert snapshot(url) != before  # nothing half-restored: one transaction

        restored = _cli(url, "db", "restore", str(dump))
        assert restored.returncode == 0, restored.stderr
        assert snapshot(url) == before

        # and into an empty database (PostGIS comes with the dump)
        pg_cluster.drop_database(restored_name)
        pg_cluster.ensure_database(restored_name)
        try:
            fresh_url = pg_cluster.url(restored_name)
            into_empty = _cli(fresh_url, "db", "restore", str(dump))
            assert into_empty.returncode == 0, into_empty.stderr
            assert snapshot(fresh_url) == before
            assert _cli(fresh_url, "db", "check").returncode == 0
        finally:
            pg_cluster.drop_database(restored_name)
