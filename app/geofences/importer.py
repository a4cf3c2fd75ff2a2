"""`hereabouts import FILE`: the bulk import from the command line, one transaction per chunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import Organisation
from app.core.config import Settings
from app.geofences import service
from app.geofences.schemas import ImportResult


class ImportFailed(Exception):
    """Raised for problems with the whole file or the organisation (not one feature)."""


def read_collection(path: Path) -> Any:
    try:
        # json.loads accepts NaN/Infinity; the validators reject them per feature.
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ImportFailed(f"cannot read {path}: {exc}") from exc


async def find_organisation(session: AsyncSession, slug: str | None) -> Organisation:
    if slug:
        org = await accounts_repository.get_organisation_by_slug(session, slug)
        if org is None:
            raise ImportFailed(f"no organisation with slug {slug!r}")
        return org
    orgs = await accounts_repository.list_organisations(session, limit=2)
    if len(orgs) != 1:
        raise ImportFailed(
            "several organisations exist; choose one with --organisation"
            if orgs
            else "no organisation exists yet (create one with `hereabouts users create-admin`)"
        )
    return orgs[0]


async def import_file(
    session: AsyncSession,
    settings: Settings,
    path: Path,
    organisation_slug: str | None,
    *,
    dry_run: bool = False,
    chunk_size: int | None = None,
    show_progress: bool = True,
) -> tuple[Organisation, ImportResult]:
    collection = read_collection(path)
    org = await find_organisation(session, organisation_slug)
    total = len(collection.get("features") or []) if isinstance(collection, dict) else 0
    columns = (
        TextColumn("[bold]importing" if not dry_run else "[bold]checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("features", total=total)
        result = await service.import_features(
            session,
            settings,
            org.id,
            collection,
            dry_run=dry_run,
            chunk_size=chunk_size,
            commit_chunk=None if dry_run else session.commit,
            progress=lambda n: progress.advance(task, n),
        )
    return org, result
