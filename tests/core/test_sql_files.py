"""Database functions kept as .sql files: the migrated database runs exactly what they say."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sqlfiles import FUNCTIONS, function_body, read_sql
from app.presence.repository import READ_COLUMNS


@pytest.mark.parametrize("path", sorted(FUNCTIONS))
async def test_the_database_runs_the_function_files(db: AsyncSession, path: str) -> None:
    name = FUNCTIONS[path]
    rows = (
        await db.execute(text("SELECT prosrc FROM pg_proc WHERE proname = :n"), {"n": name})
    ).all()
    assert len(rows) == 1, f"{name}: {len(rows)} definitions"
    assert rows[0][0] == function_body(read_sql(path)), f"{name} differs from app/{path}"


async def test_the_read_columns_are_unpacked_in_the_functions_order(db: AsyncSession) -> None:
    names = (
        await db.execute(
            text(
                "SELECT proargnames, proargmodes::text[] FROM pg_proc"
                " WHERE proname = 'hereabouts_ping_read'"
            )
        )
    ).one()
    out = [n for n, mode in zip(names[0], names[1], strict=True) if mode == "t"]
    assert tuple(out) == READ_COLUMNS
