"""The `hereabouts` command: serve, worker, db, demo, users (later issues add more)."""

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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo town first.")] = False,
    migrate: Annotated[bool, typer.Option(help="Apply migrations first.")] = True,
) -> None:
    """Run the API (and, by default, a delivery worker) — embedded PostGIS unless configured."""
    import uvicorn

    settings = get_settings()
    embedded = settings.uses_embedded_database
    url = _database_url()
    if migrate:
        _upgrade(url)
    if demo:
        from app.demo import load_demo

        for line in _with_session(load_demo, url):
            typer.echo(f"  {line}")
    bind_host, bind_port = host or settings.host, port or settings.port
    typer.echo(f"Hereabouts on http://{bind_host}:{bind_port}  (API docs: /docs)")
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers or settings.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            proxy_headers=True,
            forwarded_allow_ips=settings.trusted_proxies,
        )
    finally:
        if embedded:
            from app.core.cluster import default_cluster

            default_cluster().stop()
            typer.echo("embedded PostgreSQL stopped")


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
def db_stop() -> None:
    """Stop the embedded PostgreSQL cluster (data is kept)."""
    from app.core.cluster import default_cluster

    default_cluster().stop()


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
    from app.rules.demo import demo_walk as walk

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
) -> None:
    """Run a push delivery worker (any number may run; they share the outbox safely)."""
    import signal

    from app.core.db import create_engine
    from app.notifications.worker import run_worker

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
        try:
            await run_worker(settings, engine, stop)
        finally:
            await engine.dispose()

    typer.echo("push delivery worker running (Ctrl-C stops it after in-flight sends finish)")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
