"""The `hereabouts` command: serve, worker, db, demo, users, webhooks (later issues add more)."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from app.core.config import get_settings

app = typer.Typer(help="Hereabouts: location-based services for councils.", no_args_is_help=True)
db_app = typer.Typer(help="Database: migrations and the embedded cluster.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
users_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(users_app, name="users")
vapid_app = typer.Typer(help="Web Push VAPID keys.", no_args_is_help=True)
app.add_typer(vapid_app, name="vapid")

T = TypeVar("T")


def _database_url() -> str:
    from app.core import database_url

    try:
        return database_url.resolve()
    except Exception as exc:  # ClusterError and friends: show the message, not a traceback
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _upgrade(url: str) -> None:
    from alembic import command

    from app.core.ops import alembic_config

    command.upgrade(alembic_config(url), "head")


def _with_session(fn: Callable[..., Awaitable[T]], url: str) -> T:
    from app.core.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(get_settings(), url)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await fn(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


class _StopRequested(Exception):
    """SIGTERM or SIGHUP reached `serve` outside uvicorn's own handling of it."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _StopRequested(signum)


def _refuse_in_use(exc: Exception, hint: str = "") -> typer.Exit:
    from app.core.datadir import EXIT_DATA_DIR_IN_USE

    typer.secho(f"error: {exc}{hint}", fg=typer.colors.RED, err=True)
    return typer.Exit(EXIT_DATA_DIR_IN_USE)


def _run_uvicorn(host: str, port: int, workers: int, trusted_proxies: list[str]) -> bool:
    """uvicorn.run(), except that SIGHUP shuts down gracefully (as SIGTERM) instead of reloading.

    Returns False if the server could not start (e.g. the port is taken).
    """
    import signal

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:  # a closed terminal: stop, never restart the workers
            self.handle_term()

    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        proxy_headers=True,
        # X-Forwarded-For only from these (default none: docs/security.md)
        forwarded_allow_ips=trusted_proxies,
    )
    if config.workers > 1:
        from app.core.datadir import SERVE_PID_ENV

        os.environ[SERVE_PID_ENV] = str(os.getpid())  # the workers die with this process
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return True
    server = uvicorn.Server(config)
    # uvicorn's single process handles SIGINT/SIGTERM gracefully (in-flight requests and ping
    # groups finish, the lifespan shuts down) but not SIGHUP: turn SIGHUP into SIGTERM
    signal.signal(signal.SIGHUP, lambda signum, frame: server.handle_exit(signal.SIGTERM, frame))
    server.run()
    return server.started


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo town first.")] = False,
    migrate: Annotated[bool, typer.Option(help="Apply migrations first.")] = True,
) -> None:
    """Run the API (and, by default, a delivery worker) — embedded PostGIS unless configured.

    With the embedded database, the data directory has one owner: a second `serve` on it is
    refused (exit status 3) before it touches anything. The embedded cluster is stopped on exit
    (SIGINT, SIGTERM, SIGHUP) if this process started it, and restarted with backoff if it stops.
    """
    import logging
    import signal

    from app.core.cluster import ClusterError, ClusterSupervisor, EmbeddedCluster
    from app.core.datadir import EXIT_ERROR, DataDirInUse, DataDirLock, pid_alive

    settings = get_settings()
    embedded = settings.uses_embedded_database
    bind_host, bind_port = host or settings.host, port or settings.port
    log = logging.getLogger("hereabouts.serve")
    lock: DataDirLock | None = None
    if embedded:
        lock = DataDirLock(settings.data_dir)
        try:
            lock.acquire("serve", f"http://{bind_host}:{bind_port}")
        except DataDirInUse as exc:
            raise _refuse_in_use(exc) from None
    handled = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in handled}
    cluster: EmbeddedCluster | None = None
    supervisor: ClusterSupervisor | None = None
    exit_code = 0
    try:
        if lock is not None:
            from app.core.cluster import default_cluster

            cluster = default_cluster()
            before = lock.previous
            orphan = (
                cluster.postmaster_pid() is not None
                and bool(before.get("owns_cluster"))
                and isinstance(before.get("pid"), int)
                and not pid_alive(before["pid"])
            )
            try:
                url = cluster.ensure_running()
                cluster.ensure_database("hereabouts")
            except ClusterError as exc:
                typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
                raise typer.Exit(EXIT_ERROR) from exc
            if orphan:
                log.warning(
                    "embedded PostgreSQL was left running by a serve that ended without "
                    "stopping it (pid %s): adopted, it stops when this serve exits",
                    before.get("pid"),
                )
            lock.update(owns_cluster=cluster.started_here or orphan)
            os.environ["HEREABOUTS_DATABASE_URL"] = url
            settings.database_url = url
            get_settings.cache_clear()
            held = lock
            supervisor = ClusterSupervisor(
                cluster, on_restart=lambda: held.update(owns_cluster=True)
            )
            supervisor.start()
        url = _database_url()
        if migrate:
            _upgrade(url)
        if demo:
            from app.demo import load_demo

            for line in _with_session(load_demo, url):
                typer.echo(f"  {line}")
        typer.echo(f"Hereabouts on http://{bind_host}:{bind_port}  (API docs: /docs)")
        if not _run_uvicorn(
            bind_host, bind_port, workers or settings.workers, settings.trusted_proxies
        ):
            exit_code = EXIT_ERROR
    except (_StopRequested, KeyboardInterrupt):
        pass
    finally:
        # a second signal must not cut the clean-up short
        for sig in (signal.SIGINT, *handled):
            signal.signal(sig, signal.SIG_IGN)
        if supervisor is not None:
            supervisor.stop()
        if cluster is not None and lock is not None:
            if lock.info.get("owns_cluster"):
                cluster.stop()
                typer.echo("embedded PostgreSQL stopped")
            else:
                typer.echo("embedded PostgreSQL left running (this serve did not start it)")
        if lock is not None:
            lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if exit_code:
        raise typer.Exit(exit_code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (a deploy step in production)."""
    from alembic import command

    from app.core.ops import alembic_config

    command.upgrade(alembic_config(_database_url()), revision)


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    from alembic import command

    from app.core.ops import alembic_config

    command.current(alembic_config(_database_url()), verbose=False)


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations have drifted apart (`alembic check`)."""
    from alembic import command

    from app.core.ops import alembic_config

    command.check(alembic_config(_database_url()))
    typer.echo("models and migrations agree")


@db_app.command("stop")
def db_stop(
    force: Annotated[
        bool,
        typer.Option(help="If a `serve` holds the data directory, stop it first (SIGTERM, wait)."),
    ] = False,
) -> None:
    """Stop the embedded PostgreSQL cluster (data is kept); refused while `serve` runs."""
    from app.core.cluster import default_cluster
    from app.core.datadir import DataDirInUse, DataDirLock, stop_owner

    data_dir = get_settings().data_dir
    lock = DataDirLock(data_dir)
    try:
        lock.acquire("db stop")
    except DataDirInUse as exc:
        if not force:
            raise _refuse_in_use(exc, "; stop it first, or use `db stop --force`") from None
        typer.echo(f"stopping the service first (SIGTERM to pid {exc.owner.get('pid')})")
        try:
            lock = stop_owner(data_dir, exc.owner, "db stop")
        except DataDirInUse as still:
            raise _refuse_in_use(still, " (it did not stop within 60 s)") from None
    try:
        default_cluster().stop()
        typer.echo("embedded PostgreSQL stopped")
    finally:
        lock.release()


def _pg_tool(name: str) -> str:
    import shutil

    from app.core.cluster import find_pg_bindir

    bindir = find_pg_bindir()
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        typer.secho(
            f"error: {name} not found: install the PostgreSQL client (e.g. postgresql-client)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    return found


def _libpq_env(url: str) -> dict[str, str]:
    """libpq environment (PGHOST, PGPASSWORD, ...) for the database at a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    ssl = parsed.query.get("sslmode") or parsed.query.get("ssl")
    if isinstance(ssl, str):
        values["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(ssl, ssl)
    env.update({k: str(v) for k, v in values.items() if v})
    return env


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the dump (pg_dump custom format).")],
) -> None:
    """Back the database up with pg_dump (custom format), embedded or configured alike."""
    import subprocess

    env = _libpq_env(_database_url())
    file = file.resolve()
    partial = file.with_name(file.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    result = subprocess.run(
        [_pg_tool("pg_dump"), "--format=custom", "--file", str(partial)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        typer.secho(
            f"error: pg_dump failed: {result.stderr.strip()}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1)
    partial.replace(file)  # a backup file is either complete or absent
    typer.echo(f"backup written to {file} ({file.stat().st_size} bytes)")


def _restore(file: Path, env: dict[str, str]) -> str | None:
    """Replace the public schema with the dump's, in one transaction; the error, if any.

    `pg_restore --clean` cannot drop the primary keys of the ping partitions (inherited
    constraints), so the schema is dropped whole and recreated instead. The dump is first turned
    into SQL in a private temporary file: a dump that is truncated or corrupt fails there, before
    anything is changed, and the SQL then runs in one transaction (`psql --single-transaction`).
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hereabouts-restore-") as tmp:
        script = Path(tmp) / "restore.sql"
        result = subprocess.run(
            [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--file", str(script),
             str(file)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            return f"pg_restore: {result.stderr.strip()}"
        result = subprocess.run(
            [_pg_tool("psql"), "--no-psqlrc", "--quiet", "--single-transaction",
             "--set", "ON_ERROR_STOP=1",
             "--command", "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public",
             "--file", str(script)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            return f"psql: {result.stderr.strip()}"
    return None


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="A dump written by `hereabouts db backup`.")],
) -> None:
    """Replace the database's contents with a backup (in one transaction: all or nothing).

    With the embedded database this is refused while `serve` runs; with a configured database,
    stop the service (every replica and worker) yourself first.
    """
    from app.core.datadir import DataDirInUse, DataDirLock

    if not file.is_file():
        typer.secho(f"error: {file} is not a file", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    lock: DataDirLock | None = None
    if get_settings().uses_embedded_database:
        lock = DataDirLock(get_settings().data_dir)
        try:
            lock.acquire("db restore")
        except DataDirInUse as exc:
            raise _refuse_in_use(exc, "; stop it first (`hereabouts db stop --force`)") from None
    try:
        env = _libpq_env(_database_url())
        error = _restore(file, env)
    finally:
        if lock is not None:
            lock.release()
    if error:
        typer.secho(
            f"error: restore failed, nothing was changed: {error}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1)
    typer.echo(f"restored {file}")


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo town (idempotent) and print the demo credentials."""
    from app.demo import load_demo

    url = _database_url()
    _upgrade(url)
    for line in _with_session(load_demo, url):
        typer.echo(line)


@demo_app.command("walk")
def demo_walk() -> None:
    """Replay a resident's walk and a field worker's round; print what was queued and why."""
    from app.demo_walk import demo_walk as walk

    url = _database_url()
    _upgrade(url)
    settings = get_settings()

    async def run(session: object) -> list[str]:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        return await walk(session, settings)

    for line in _with_session(run, url):
        typer.echo(line)


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True)],
    organisation: Annotated[str, typer.Option(help="Organisation slug (created if new).")],
    name: Annotated[str, typer.Option(help="Organisation display name, if new.")] = "",
    full_name: Annotated[str, typer.Option()] = "Administrator",
) -> None:
    """Create an admin (and the organisation if it does not exist yet)."""
    from app.accounts import service
    from app.accounts.models import Role

    password = os.environ.get("HEREABOUTS_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    if len(password) < 10:
        typer.secho(
            "error: the password needs at least 10 characters", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1)

    async def create(session: object) -> str:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        org = await service.get_or_create_organisation(session, organisation, name or organisation)
        user = await service.create_user(
            session, org.id, email=email, full_name=full_name, password=password, role=Role.admin
        )
        return f"admin {user.email} created in {org.slug}"

    url = _database_url()
    _upgrade(url)
    try:
        typer.echo(_with_session(create, url))
    except Exception as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


organisations_app = typer.Typer(help="Organisations.", no_args_is_help=True)
app.add_typer(organisations_app, name="organisations")


@organisations_app.command("time-zone")
def organisation_time_zone(
    organisation: Annotated[str, typer.Argument(help="Organisation slug.")],
    zone: Annotated[
        str | None, typer.Argument(help="IANA time zone, e.g. Europe/London; omit to show.")
    ] = None,
    clear: Annotated[
        bool, typer.Option(help="Use the deployment's HEREABOUTS_TIME_ZONE again.")
    ] = False,
) -> None:
    """Show or set the zone of times in the organisation's pushes (else HEREABOUTS_TIME_ZONE)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.accounts import service
    from app.core.errors import HereaboutsError

    if zone is not None and clear:
        typer.secho("error: give a zone or --clear, not both", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    async def run(session: AsyncSession) -> str:
        settings = get_settings()
        if zone is None and not clear:
            org = await service.get_organisation_by_slug(session, organisation)
            own = org.time_zone
        else:
            own = (await service.set_time_zone(session, organisation, zone)).time_zone
        used = own or settings.time_zone
        return f"{organisation}: {used}" + ("" if own else " (HEREABOUTS_TIME_ZONE)")

    try:
        typer.echo(_with_session(run, _database_url()))
    except HereaboutsError as exc:
        typer.secho(f"error: {exc.detail}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@app.command("import")
def import_places(
    file: Annotated[Path, typer.Argument(help="A GeoJSON FeatureCollection file.")],
    organisation: Annotated[
        str | None, typer.Option(help="Organisation slug (optional if there is only one).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and count; store nothing.")] = False,
    chunk_size: Annotated[int | None, typer.Option(help="Features per transaction.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import places (geofences) from GeoJSON: upsert by external_id, report bad features."""
    from app.geofences.importer import ImportFailed, import_file

    async def run_import(session: object) -> str:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        org, result = await import_file(
            session, get_settings(), file, organisation,
            dry_run=dry_run, chunk_size=chunk_size, show_progress=progress,
        )  # fmt: skip
        for error in result.errors:
            where = f" ({error.external_id})" if error.external_id else ""
            typer.secho(
                f"  feature {error.index}{where}: {error.reason}: {error.detail}",
                fg=typer.colors.YELLOW,
                err=True,
            )
        verb = "would create" if dry_run else "created"
        return (
            f"{org.slug}: {result.total} features, {verb} {result.created}, "
            f"{'would update' if dry_run else 'updated'} {result.updated}, failed {result.failed}"
        )

    url = _database_url()
    _upgrade(url)
    try:
        typer.echo(_with_session(run_import, url))
    except ImportFailed as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


pings_app = typer.Typer(help="Location pings: partitions and retention.", no_args_is_help=True)
app.add_typer(pings_app, name="pings")


@pings_app.command("maintain")
def pings_maintain() -> None:
    """Create ping day partitions ahead and drop those past the retention window."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.presence import service as presence_service

    async def maintain(session: AsyncSession) -> dict[str, object]:
        return await presence_service.maintain_ping_partitions(session, get_settings())

    outcome = _with_session(maintain, _database_url())
    typer.echo(f"partitions created: {outcome['created']}, dropped: {outcome['dropped']}")


@app.command()
def purge() -> None:
    """Remove everything past its retention period now and print what was removed."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.privacy import service as privacy_service

    async def run(session: AsyncSession) -> dict[str, object]:
        return await privacy_service.purge(session, get_settings())

    removed = _with_session(run, _database_url())
    for kind, amount in removed.items():
        typer.echo(f"{kind}: {amount}")


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Concurrent push requests (default: settings).")
    ] = None,
    push: Annotated[
        bool, typer.Option(help="Deliver push notifications and webhooks (the outboxes).")
    ] = True,
    pings: Annotated[
        bool, typer.Option(help="Evaluate pings acknowledged with 202 (the ping queue).")
    ] = True,
) -> None:
    """Run a push delivery worker, the scheduled jobs and a ping evaluator (any number may run;
    they share the outbox and the ping queue safely, and each job runs in one process at a time)."""
    import signal

    from app.core.db import create_engine
    from app.core.heap import settle_heap
    from app.events import service as events_service
    from app.main import register_event_hooks
    from app.notifications.worker import run_worker
    from app.presence.evaluator import run_evaluator
    from app.scheduled import run_scheduled_jobs
    from app.webhooks.worker import run_webhook_worker

    settings = get_settings()
    if concurrency:
        settings = settings.model_copy(update={"push_worker_concurrency": concurrency})
    url = _database_url()

    async def main_async() -> None:
        engine = create_engine(settings, url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        register_event_hooks()
        # as an API process does once started: a worker evaluating sets of fixes allocates as
        # much, and with the default thresholds its collector traversed the startup heap again
        # and again (docs/benchmarks.md, issue 25)
        settle_heap()
        parts = []
        if push:
            parts.append(run_worker(settings, engine, stop))
            parts.append(run_webhook_worker(settings, engine, stop))
        if pings:
            # the evaluated events go through the event pipeline, as in the API process
            hook = events_service.presence_hook(settings)
            parts.append(run_evaluator(settings, engine, stop, on_events=hook))
        try:
            await asyncio.gather(*parts, run_scheduled_jobs(settings, engine, stop))
        finally:
            await engine.dispose()

    what = " and ".join(
        n for n, on in (("push and webhook delivery", push), ("ping evaluator", pings)) if on
    )
    typer.echo(f"{what or 'nothing'} running (Ctrl-C stops after in-flight work finishes)")
    asyncio.run(main_async())


@vapid_app.command("generate")
def vapid_generate(
    out: Annotated[
        str | None,
        typer.Option(
            help="Where to write the PEM private key (default: <data_dir>/vapid_private_key.pem)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file.")] = False,
) -> None:
    """Create a VAPID key pair: writes the private key (mode 0600), prints the public key."""
    from pathlib import Path

    from app.notifications import vapid

    settings = get_settings()
    path = Path(out) if out else settings.data_dir / vapid.DEFAULT_KEY_FILE
    if path.exists():
        if not force:
            typer.secho(
                f"error: {path} exists (use --force to replace it)", fg=typer.colors.RED, err=True
            )
            raise typer.Exit(1)
        path.unlink()
    key = vapid.generate_private_key()
    vapid.write_key_file(path, key)
    typer.echo(f"private key: {path}")
    typer.echo(
        f"public key (applicationServerKey): {vapid.b64url(vapid.public_key_raw(key.public_key()))}"
    )
    typer.echo(
        f"set HEREABOUTS_VAPID_PRIVATE_KEY_FILE={path} and HEREABOUTS_VAPID_SUBJECT=mailto:..."
    )


webhooks_app = typer.Typer(help="Webhook endpoints.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("rekey")
def webhooks_rekey() -> None:
    """Re-encrypt every endpoint's signing secret under the current key (after a key change).

    Secrets sealed with a key in HEREABOUTS_WEBHOOK_PREVIOUS_SECRET_KEYS are sealed again with
    HEREABOUTS_WEBHOOK_SECRET_KEY(_FILE); those already under it are left alone, so running it
    twice changes nothing. If a secret opens with no configured key, nothing is written (exit 1).
    """
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.webhooks import secretbox
    from app.webhooks import service as webhooks_service

    async def run(session: AsyncSession) -> webhooks_service.RekeyReport:
        report = await webhooks_service.rekey_secrets(session, get_settings())
        if report.unreadable:
            await session.rollback()
        return report

    try:
        report = _with_session(run, _database_url())
    except secretbox.SecretKeyError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"endpoints: {report.endpoints}")
    if report.unreadable:
        typer.secho(
            f"error: no configured key opens the secrets of {len(report.unreadable)} endpoint(s): "
            + ", ".join(str(i) for i in report.unreadable)
            + "; nothing was written (list the key they were sealed with in "
            "HEREABOUTS_WEBHOOK_PREVIOUS_SECRET_KEYS and run again)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"secrets re-encrypted: {report.resealed}")
    typer.echo(f"secrets already under the current key: {report.current}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
