"""Engine, declarative base and the per-request session (one transaction per request)."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import (
    ColumnElement,
    DateTime,
    FromClause,
    MetaData,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import Uuid

from app.core.config import Settings
from app.core.metrics import TRANSACTION_RETRIES

logger = logging.getLogger(__name__)
T = TypeVar("T")

_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), uuid.UUID: Uuid()}


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


def _drop_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: refuse a connection whose socket the server has closed (restart, idle kill).

    A local check with no round trip. SQLAlchemy's `pool_pre_ping` sends BEGIN, an empty query and
    ROLLBACK on every checkout with asyncpg: three round trips per request, ≈ 6 % of a single-ping
    request's CPU in the bench profile. The pool retries the checkout with a fresh connection.
    """
    raw = getattr(dbapi_connection, "_connection", None)
    if raw is not None and raw.is_closed():
        raise sa_exc.DisconnectionError("connection closed by the server")


def create_engine(settings: Settings, url: str | None = None, **kwargs: Any) -> AsyncEngine:
    db_url = url or settings.database_url
    if db_url is None:
        raise RuntimeError("database URL not resolved; call app.core.database_url.resolve() first")
    engine = create_async_engine(
        db_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "hereabouts",
                # JIT compiles a plan when its estimated cost is high, which set-based statements
                # over a batch (unnest x GiST lateral joins) reach easily: 0.5 s of compilation
                # for an 11 ms statement in the bench. Short OLTP statements never gain from it.
                "jit": "off",
                # On Citus, every query of pg_class hides shard placements with a per-row
                # function, which makes asyncpg's type introspection (a new connection's first
                # statement with array parameters) take 1.5-7 s instead of 30 ms; the app never
                # lists tables, so it sees them. A placeholder setting, ignored without Citus.
                "citus.override_table_visibility": "off",
            },
            "timeout": 5,
        },
        **kwargs,
    )
    if not settings.db_pool_pre_ping:
        event.listen(engine.sync_engine.pool, "checkout", _drop_closed_connection)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request, committed before the response is sent.

    Used with ``scope="function"`` so the commit happens before FastAPI sends the response:
    a failed commit is a 5xx the client sees, never a 2xx for data that was not stored.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction():  # else nothing was asked (e.g. a token from memory)
                await session.commit()


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Call `fn` once this session's transaction has committed (never on a rollback): for an
    in-memory cache of this process to drop what the commit changed (e.g. app/shifts/cache.py)."""
    event.listen(session.sync_session, "after_commit", lambda _s: fn(), once=True)


async def driver_connection(session: AsyncSession, *, transaction: bool = True) -> Any:
    """The asyncpg connection under `session`, for hot paths that run a few fixed statements.

    asyncpg's own prepared-statement cache costs a fraction of SQLAlchemy's per-execute work
    (compile-cache lookup, parameter processing, result wrapping, greenlet hop).

    `transaction=True`: the statements join the request's transaction (BEGIN is sent first if
    the session has not sent it yet), so they commit or roll back with everything else.
    `transaction=False`: if the request has not begun its transaction yet, the statements run in
    autocommit — one round trip each, no BEGIN/COMMIT. Only for a read, or for a single write
    statement that is complete on its own; a later SQLAlchemy statement in the same request
    still begins the transaction as usual (and inside a begun transaction they simply join it).

    Errors are asyncpg's own (the error handlers know its outage errors by name);
    `integrity_error()` turns a constraint violation into SQLAlchemy's.
    """
    conn = await session.connection()
    adapted = (await conn.get_raw_connection()).dbapi_connection
    if adapted is None:  # pragma: no cover - only after the pool invalidated it
        raise sa_exc.DisconnectionError("connection invalidated")
    driver = adapted.driver_connection
    if transaction and not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: begin the
        # same way now (one round trip; a `SELECT 1` through SQLAlchemy would cost two).
        # Private on purpose, for want of a public equivalent that behaves the same:
        # `AsyncSession.begin()` / `AsyncConnection.begin()` only open SQLAlchemy's transaction
        # (the adapter still waits for a statement), and asyncpg's own
        # `driver.transaction().start()` or `execute("BEGIN")` would start one the adapter does
        # not track: the session's commit would not commit it (the adapter's own BEGIN would
        # become a savepoint inside it, or fail after a bare BEGIN). `_start_transaction` is
        # the call the adapter makes itself before its first statement (same
        # isolation level, read-only and deferrable settings, same error translation); every
        # hot-path test goes through here, so a change in SQLAlchemy shows at once.
        await adapted._start_transaction()
    return driver


def render_sql(expr: ColumnElement[Any], *outer: FromClause) -> str:
    """A SQLAlchemy condition as PostgreSQL text, for the raw asyncpg statements of hot paths.

    Shared rules are written once as expressions (e.g. `app.geofences.predicates.active_at`);
    a raw statement renders one at import time over its own aliases and `$n` placeholders
    (passed as `literal_column`s), so it states the same rule as the ORM queries. `outer` are
    the aliases the statement itself selects from: subqueries in `expr` correlate to them
    instead of listing them again in their own FROM. Constants are inlined; never pass values
    from a request here.
    """
    if not outer:
        return _compile(expr)
    text = _compile(select(literal_column("1")).select_from(*outer).where(expr))
    head, sep, where = text.partition(" \nWHERE ")
    if not sep or not head.startswith("SELECT 1 \nFROM "):  # pragma: no cover - SQLAlchemy's form
        raise RuntimeError(f"unexpected rendering: {text!r}")
    return where


def _compile(clause: ClauseElement) -> str:
    return str(clause.compile(dialect=_PG_DIALECT, compile_kwargs={"literal_binds": True}))


def integrity_error(exc: Exception, statement: str) -> sa_exc.IntegrityError:
    """An asyncpg constraint violation as SQLAlchemy's IntegrityError (→ 409 problem+json)."""
    return sa_exc.IntegrityError(statement, None, exc)


# SQLSTATEs after which the same transaction, run again from its start, may well succeed:
# 40P01 deadlock detected (on Citus also a distributed deadlock: two transactions locking one
# reference-table row on different nodes' copies, docs/scaling.md) and 40001 serialization
# failure. PostgreSQL has already rolled the victim back; the other transaction went on.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
# A worker node's own deadlock, which Citus hands on to the coordinator's client as an internal
# error (XX000 "deadlock detected", not 40P01): seen while a worker was drained and rebalanced
# under ping batches (docs/scaling.md). Its transaction is rolled back like any deadlock victim.
CITUS_WORKER_DEADLOCK = ("XX000", "deadlock detected")
# how many times a transaction is run in all before its conflict is the caller's error
CONFLICT_ATTEMPTS = 4


def conflict_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE if `exc`, or an exception it wraps, is a deadlock or serialization failure
    (also a Citus worker's deadlock passed on as XX000 "deadlock detected").

    Both shapes occur: SQLAlchemy's `DBAPIError` around the driver's error (`orig`, `__cause__`)
    and asyncpg's own error from the hot paths' `driver_connection`; each carries `sqlstate`.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in RETRYABLE_SQLSTATES:
            return sqlstate
        if sqlstate == CITUS_WORKER_DEADLOCK[0] and str(
            getattr(current, "message", "") or ""
        ).startswith(CITUS_WORKER_DEADLOCK[1]):
            return CITUS_WORKER_DEADLOCK[0]
        orig = getattr(current, "orig", None)
        current = current.__cause__ or (orig if isinstance(orig, BaseException) else None)
    return None


async def commit_retrying(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = CONFLICT_ATTEMPTS,
) -> T:
    """Run `work()` in `session`'s transaction and commit; again from the start on a conflict.

    For callers that own their transaction (services never commit). A deadlock or serialization
    failure (`RETRYABLE_SQLSTATES`) rolls the transaction back and runs `work` again, after a
    short random pause so that two identical racers do not meet again, up to `attempts` runs in
    all; any other error, or the last conflict, is rolled back and raised. `work` must do all of
    its writes through `session` (they are undone by the rollback) and have no side effect
    outside the database. `what` names the transaction in the log and in the
    `hereabouts_db_transaction_retries_total` counter.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = await work()
            await session.commit()
            return result
        except Exception as exc:
            await session.rollback()
            sqlstate = conflict_sqlstate(exc)
            if sqlstate is None or attempt == attempts:
                raise
            TRANSACTION_RETRIES.labels(what=what, sqlstate=sqlstate).inc()
            logger.warning(
                "%s: %s (SQLSTATE %s), running it again (attempt %d of %d)",
                what,
                type(exc).__name__,
                sqlstate,
                attempt + 1,
                attempts,
            )
            await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
