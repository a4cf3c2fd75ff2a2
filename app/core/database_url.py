"""Decide which database the process talks to: the configured URL or the embedded cluster."""

from __future__ import annotations

import os

from app.core.cluster import default_cluster
from app.core.config import Settings, get_settings


def resolve(settings: Settings | None = None, *, start_embedded: bool = True) -> str:
    """Return the database URL, starting the embedded cluster when none is configured.

    The resolved URL is exported to the environment so that uvicorn worker processes and
    Alembic see the same database.
    """
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    if not start_embedded:
        raise RuntimeError("HEREABOUTS_DATABASE_URL is not set and the embedded cluster is off")
    cluster = default_cluster()
    url = cluster.ensure_running()
    cluster.ensure_database("hereabouts")
    os.environ["HEREABOUTS_DATABASE_URL"] = url
    settings.database_url = url
    get_settings.cache_clear()
    return url
