"""Operational endpoints: liveness, readiness (database + migrations at head), metrics."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import PROJECT_ROOT
from app.core.errors import problem

router = APIRouter(tags=["operations"])


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@lru_cache
def migration_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up (does not touch the database)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def readyz(request: Request) -> Response:
    """Ready when the database answers and its schema is at the migrations' head."""
    engine: AsyncEngine = request.app.state.engine
    try:
        async with asyncio.timeout(3):
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return problem(
            503,
            "Not ready",
            f"Database unavailable ({type(exc).__name__}).",
            code="not-ready",
            headers={"Retry-After": "5"},
        )
    current = frozenset(r[0] for r in rows)
    if current != migration_heads():
        return problem(
            503,
            "Not ready",
            "Database schema is not at the latest migration.",
            code="not-ready",
            current=sorted(current),
            expected=sorted(migration_heads()),
        )
    return Response(content=b'{"status":"ready"}', media_type="application/json")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    """Prometheus text exposition: request counts/latency by route, delivery counters."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
