"""A data directory has one owner (issue 28), and no orphaned database (issue 18).

Every test runs real `hereabouts serve` processes on copies of one migrated embedded data
directory, each copy with its own PostgreSQL port and a free HTTP port.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.config import PROJECT_ROOT
from app.core.datadir import EXIT_DATA_DIR_IN_USE
from tests.core.embedded import DataDir
from tests.live import free_port

pytestmark = pytest.mark.slow

MakeDataDir = Callable[[], DataDir]


def test_a_second_serve_on_the_same_data_directory_is_refused_on_any_port(
    data_dirs: MakeDataDir,
) -> None:
    d = data_dirs()
    first = d.start().ready()
    lock = d.path / "hereabouts.lock"
    assert lock.stat().st_mode & 0o777 == 0o600
    owner = json.loads(lock.read_text())
    assert owner["command"] == "serve"
    assert owner["pid"] == first.proc.pid
    assert owner["url"] == first.base
    assert owner["owns_cluster"] is True
    started = time.strptime(owner["started_at"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(started) - time.mktime(time.gmtime())) < 300

    same_port = int(first.base.rsplit(":", 1)[1])
    for port in (same_port, None):  # the same port, then another one
        second = d.start(port)
        assert second.proc.wait(timeout=60) == EXIT_DATA_DIR_IN_USE
        assert (
            f"Hereabouts is already running from this data directory "
            f"(pid {first.proc.pid}, {first.base})"
        ) in second.output()
        assert "PostgreSQL" not in second.output()  # refused before touching anything
        assert first.readyz() == 200
        assert d.cluster_running()
    assert d.lock_info()["pid"] == first.proc.pid
    assert first.stop() == 0
    assert not d.cluster_running()


def test_cli_commands_run_against_a_live_service_and_leave_it_up(
    data_dirs: MakeDataDir, tmp_path: Path
) -> None:
    d = data_dirs()
    served = d.start().ready()
    commands = [
        ("db", "upgrade"),
        ("demo", "load"),
        ("users", "create-admin", "--email", "ops@cli.example", "--organisation", "cli-town"),
        ("import", str(PROJECT_ROOT / "demo" / "places-sample.geojson"), "--no-progress",
         "--organisation", "cli-town"),
        ("purge",),
        ("db", "backup", str(tmp_path / "live.dump")),
    ]  # fmt: skip
    for command in commands:
        done = d.cli(*command, HEREABOUTS_ADMIN_PASSWORD="cli-admin-password")
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert served.readyz() == 200, command
        assert d.cluster_running(), command
    assert (tmp_path / "live.dump").stat().st_size > 0
    # a restore would replace the database under the service: refused like a second serve
    refused = d.cli("db", "restore", str(tmp_path / "live.dump"))
    assert refused.returncode == EXIT_DATA_DIR_IN_USE, refused.stderr
    assert "Hereabouts is already running from this data directory" in refused.stderr
    assert served.readyz() == 200
    assert served.proc.poll() is None


def test_db_stop_is_refused_while_serve_runs_and_force_stops_the_service_first(
    data_dirs: MakeDataDir,
) -> None:
    d = data_dirs()
    served = d.start().ready()
    refused = d.cli("db", "stop")
    assert refused.returncode == EXIT_DATA_DIR_IN_USE
    assert f"already running from this data directory (pid {served.proc.pid}" in refused.stderr
    assert "--force" in refused.stderr
    assert served.readyz() == 200
    assert d.cluster_running()

    forced = d.cli("db", "stop", "--force")
    assert forced.returncode == 0, forced.stderr
    assert served.proc.wait(timeout=5) == 0  # it had stopped cleanly before db stop returned
    assert "embedded PostgreSQL stopped" in served.output()
    assert not d.cluster_running()
    assert d.lock_info() == {}  # released and cleared: the next start adopts nothing


def test_two_data_directories_run_side_by_side_and_stopping_one_leaves_the_other_up(
    data_dirs: MakeDataDir,
) -> None:
    a, b = data_dirs(), data_dirs()
    served_a, served_b = a.start(), b.start()
    served_a.ready()
    served_b.ready()
    assert served_b.stop(signal.SIGINT) == 0  # Ctrl-C
    assert "embedded PostgreSQL stopped" in served_b.output()
    assert not b.cluster_running()
    assert a.cluster_running()
    assert served_a.readyz() == 200
    assert served_a.stop() == 0
    assert not a.cluster_running()


def test_after_kill_9_the_next_start_recovers_the_lock_and_adopts_the_orphaned_cluster(
    data_dirs: MakeDataDir,
) -> None:
    d = data_dirs()
    port = free_port()
    # two uvicorn workers, as `make run` has: they must not outlive their supervisor
    killed = d.start(port, HEREABOUTS_WORKERS="2").ready()
    workers = [int(p) for p in Path(f"/proc/{killed.proc.pid}/task/{killed.proc.pid}/children")
               .read_text().split()]  # fmt: skip
    killed.proc.kill()
    killed.proc.wait()
    assert d.cluster_running()  # the orphan a killed serve leaves behind
    assert d.lock_info()["pid"] == killed.proc.pid  # stale contents, but nobody holds the lock
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "workers outlived serve"

    again = d.start(port, HEREABOUTS_WORKERS="2").ready()  # the same port is free again
    assert d.lock_info()["pid"] == again.proc.pid
    assert d.lock_info()["owns_cluster"] is True
    assert f"left running by a serve that ended without stopping it (pid {killed.proc.pid})" in (
        again.output()
    )
    assert again.stop() == 0
    assert not d.cluster_running()  # adopted, so stopped with the serve that adopted it


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_stops_the_cluster_it_started_on_sighup(data_dirs: MakeDataDir, workers: str) -> None:
    """A closed terminal. (SIGTERM and SIGINT: the other tests stop serve with those.)"""
    d = data_dirs()
    served = d.start(None, HEREABOUTS_WORKERS=workers).ready()
    assert d.cluster_running()
    assert served.stop(signal.SIGHUP) == 0, served.output()
    assert "embedded PostgreSQL stopped" in served.output(), served.output()
    assert not d.cluster_running()
    assert d.lock_info() == {}


def test_serve_leaves_running_a_cluster_it_did_not_start(data_dirs: MakeDataDir) -> None:
    d = data_dirs()
    assert d.cli("db", "upgrade").returncode == 0  # a DB-only command starts the cluster
    assert d.cluster_running()
    served = d.start().ready()
    assert d.lock_info()["owns_cluster"] is False
    assert served.stop() == 0
    assert "left running (this serve did not start it)" in served.output()
    assert d.cluster_running()
