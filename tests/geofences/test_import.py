"""Bulk import: upsert by external_id, per-feature errors with index and reason, dry run, CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import PROJECT_ROOT, Settings
from app.demo import load_demo
from app.geofences import service
from app.geofences.models import Geofence
from app.geofences.sample import generate
from tests.factories import Staff, create_organisation, create_staff
from tests.live import create_admin

SAMPLE = PROJECT_ROOT / "demo" / "places-sample.geojson"


@pytest.fixture
async def editor(db: AsyncSession, settings: Settings) -> Staff:
    org = await create_organisation(db)
    return await create_staff(db, settings, org, Role.editor)


async def _count(db: AsyncSession, org_id: object) -> int:
    stmt = (
        select(func.count())
        .select_from(Geofence)
        .where(Geofence.organisation_id == org_id, Geofence.deleted_at.is_(None))
    )
    return int(await db.scalar(stmt) or 0)


def _with_bad_features(collection: dict[str, Any]) -> tuple[dict[str, Any], dict[int, str]]:
    """Put seven bad features at known positions; return {index: reason}."""
    features: list[Any] = collection["features"]
    good = next(f for f in features if f["geometry"]["type"] == "Polygon")
    serial = iter(range(100))

    def bad(geometry: Any = None, **props: Any) -> dict[str, Any]:
        f: dict[str, Any] = copy.deepcopy(good)
        if geometry is not None:
            f["geometry"] = geometry
        f["properties"].update(props)
        f["properties"]["external_id"] = f"BAD-{next(serial)}"
        return f

    planted: dict[int, str] = {}
    square = [[-2.0, 53.7], [-1.99, 53.7], [-1.99, 53.71], [-2.0, 53.71], [-2.0, 53.7]]
    cases: list[tuple[int, Any, str]] = [
        (5, bad({"type": "Polygon", "coordinates": [square[:-1]]}), "unclosed-ring"),
        (
            250,
            bad(
                {
                    "type": "Polygon",
                    "coordinates": [[square[0], square[2], square[1], square[3], square[0]]],
                }
            ),  # fmt: skip
            "self-intersection",
        ),
        (
            400,
            bad({"type": "Polygon", "coordinates": [[[200, 1], [201, 1], [201, 2], [200, 1]]]}),
            "longitude-out-of-range",
        ),  # fmt: skip
        (600, bad(name=""), "invalid-properties"),
        (700, {**bad(), "crs": {"type": "name"}}, "crs-not-allowed"),
        (800, copy.deepcopy(features[10]), "duplicate-external-id"),
        (
            900,
            bad({"type": "Polygon", "coordinates": [[[-2.0, float("nan")], *square[1:]]]}),
            "coordinate-not-finite",
        ),  # fmt: skip
    ]
    for index, feature, reason in cases:
        at = min(index, len(features))  # short files: the bad ones go at the end
        features.insert(at, feature)
        planted[at] = reason
    return collection, planted


async def test_import_of_a_realistic_file_keeps_good_features_and_reports_bad_ones(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    collection, planted = _with_bad_features(generate(1_100))
    body = json.dumps(collection, separators=(",", ":"))  # writes NaN, as sloppy exporters do
    headers = {**editor.headers, "content-type": "application/json"}
    resp = await client.post("/v1/geofences/import", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["total"] == 1_107
    assert result["created"] == 1_100
    assert result["updated"] == 0
    assert {e["index"]: e["reason"] for e in result["errors"]} == planted
    assert all(e["detail"] for e in result["errors"])
    assert await _count(db, editor.organisation_id) == 1_100

    # Re-importing the same file updates in place (upsert by external_id), creating nothing.
    first = collection["features"][0]
    first["properties"]["name"] = "Renamed Library"
    body = json.dumps(collection, separators=(",", ":"))
    result = (await client.post("/v1/geofences/import", content=body, headers=headers)).json()
    assert (result["created"], result["updated"], result["failed"]) == (0, 1_100, 7)
    assert await _count(db, editor.organisation_id) == 1_100
    name = await db.scalar(
        select(Geofence.name).where(
            Geofence.organisation_id == editor.organisation_id,
            Geofence.external_id == first["properties"]["external_id"],
        )
    )
    assert name == "Renamed Library"


async def test_dry_run_validates_and_counts_but_stores_nothing(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    collection, planted = _with_bad_features(generate(50))
    resp = await client.post(
        "/v1/geofences/import",
        params={"dry_run": "true"},
        content=json.dumps(collection),
        headers={**editor.headers, "content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["dry_run"] is True
    assert (result["created"], result["failed"]) == (50, 7)
    assert await _count(db, editor.organisation_id) == 0


async def test_import_uses_feature_id_as_external_id_and_requires_one(
    client: httpx.AsyncClient, db: AsyncSession, editor: Staff
) -> None:
    feature = generate(1)["features"][0]
    del feature["properties"]["external_id"]
    with_id = {**feature, "id": 4217}
    numeric = copy.deepcopy(feature)
    numeric["properties"]["external_id"] = 4218
    collection = {"type": "FeatureCollection", "features": [with_id, feature, numeric]}
    result = (
        await client.post("/v1/geofences/import", json=collection, headers=editor.headers)
    ).json()
    assert result["created"] == 2
    stored = await db.scalars(
        select(Geofence.external_id).where(Geofence.organisation_id == editor.organisation_id)
    )
    assert sorted(str(x) for x in stored) == ["4217", "4218"]
    assert result["errors"] == [
        {
            "index": 1,
            "external_id": None,
            "reason": "external-id-required",
            "field": "properties.external_id",
            "detail": result["errors"][0]["detail"],
        }
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "Feature", "geometry": None, "properties": {}},
        {"type": "FeatureCollection", "features": {}},
        {"type": "FeatureCollection", "features": [], "crs": {"type": "name"}},
    ],
)
async def test_import_body_must_be_a_feature_collection(
    client: httpx.AsyncClient, editor: Staff, body: dict[str, Any]
) -> None:
    resp = await client.post("/v1/geofences/import", json=body, headers=editor.headers)
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_demo_loader_registers_the_towns_places_idempotently(db: AsyncSession) -> None:
    await load_demo(db)
    await load_demo(db)
    org_id = await db.scalar(select(Organisation.id).where(Organisation.slug == "demo-town"))
    rows = (
        await db.execute(
            select(Geofence.category, func.count())
            .where(Geofence.organisation_id == org_id, Geofence.deleted_at.is_(None))
            .group_by(Geofence.category)
        )
    ).all()
    assert dict(rows) == {"library": 3, "leisure_centre": 1, "park": 1, "depot": 1}
    assert org_id is not None
    # The central library is found from a point on its doorstep.
    places = await service.resolve(db, org_id, -2.01225, 53.74185, 5)
    assert places[0].geofence.name == "Calderbridge Central Library"


@pytest.mark.slow
def test_cli_import_with_progress_then_dry_run(database_url: str, tmp_path: Path) -> None:
    """The real command in a subprocess (it commits per chunk, so it gets its own organisation)."""
    env = {
        **os.environ,
        "HEREABOUTS_DATABASE_URL": database_url,
        "HEREABOUTS_LOG_LEVEL": "WARNING",
    }
    slug = f"cli-import-{os.getpid()}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=PROJECT_ROOT,
        )

    # the organisation, as `users create-admin` makes it (that command is run in tests/core)
    create_admin(database_url, f"{slug}@example.org", slug, "cli-test-password")
    collection, planted = _with_bad_features(generate(120))
    path = tmp_path / "places.geojson"
    path.write_text(json.dumps(collection))
    done = cli("import", str(path), "--organisation", slug, "--chunk-size", "50")
    assert done.returncode == 0, done.stderr
    assert "127 features, created 120, updated 0, failed 7" in done.stdout
    assert "feature 5 (BAD-0): unclosed-ring" in done.stderr
    again = cli("import", str(path), "--organisation", slug, "--dry-run", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "would create 0, would update 120, failed 7" in again.stdout


async def test_cli_importer_reports_unreadable_files_and_unknown_organisations(
    db: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    from app.geofences.importer import ImportFailed, import_file

    with pytest.raises(ImportFailed, match="cannot read"):
        await import_file(db, settings, tmp_path / "nope.geojson", None)
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", ')
    with pytest.raises(ImportFailed, match="cannot read"):
        await import_file(db, settings, path, None)
    path.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(ImportFailed, match="no organisation"):
        await import_file(db, settings, path, "no-such-council")
