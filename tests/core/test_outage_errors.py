"""Which database errors are an outage (503 + Retry-After) rather than a bug (500)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError

from app.core.errors import is_database_outage


def _as_sqlalchemy_raises_it(driver_error: BaseException) -> DBAPIError:
    """SQLAlchemy's asyncpg adapter: DBAPIError(orig=adapter error) ← the asyncpg error."""
    adapted = RuntimeError(str(driver_error))
    adapted.__cause__ = driver_error
    wrapped = DBAPIError("connect", None, adapted)
    wrapped.__cause__ = adapted
    return wrapped


def test_a_server_still_starting_up_is_an_outage() -> None:
    # what every request got while PostgreSQL recovered from a crash: it was a 500
    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    assert is_database_outage(_as_sqlalchemy_raises_it(starting))


def test_a_crash_or_admin_shutdown_of_the_server_is_an_outage() -> None:
    for error in (
        asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
    ):
        assert is_database_outage(_as_sqlalchemy_raises_it(error))


def test_a_constraint_violation_is_not_an_outage() -> None:
    duplicate = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    assert not is_database_outage(_as_sqlalchemy_raises_it(duplicate))
    assert not is_database_outage(ValueError("bug"))
