"""The baseline every figure is compared with (docs/quality.md, "Speed").

The least a point lookup can do over HTTP: a pydantic body, an asyncpg pool and one
`ST_Intersects` on the GiST-indexed `geofences.geom`, returning the ids. Served by uvicorn with
the same worker count as the product, uvloop and httptools:

    BENCH_DSN=postgresql://... uvicorn bench.baseline:app --workers 2 --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

LOOKUP = """
SELECT id FROM geofences
WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326)) AND deleted_at IS NULL
"""


class Point(BaseModel):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class Hits(BaseModel):
    ids: list[str]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["BENCH_DSN"], min_size=2, max_size=int(os.environ.get("BENCH_POOL", "10"))
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/lookup")
async def lookup(point: Point, request: Request) -> Hits:
    """Ids of the geofences containing the point."""
    pool: asyncpg.Pool = request.app.state.pool
    rows = await pool.fetch(LOOKUP, point.lon, point.lat)
    return Hits(ids=[str(r["id"]) for r in rows])


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Up."""
    return {"status": "ok"}
