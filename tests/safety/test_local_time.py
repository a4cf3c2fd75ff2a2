"""Lone-working pushes say times in the organisation's zone (its own, else HEREABOUTS_TIME_ZONE,
default UTC), with the zone's abbreviation, right across daylight-saving changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from app.accounts import service as accounts_service
from app.accounts.models import Organisation
from app.cli import app as cli_app
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings, get_settings
from app.core.db import create_engine
from app.core.errors import Unprocessable
from app.core.localtime import clock
from tests.conftest import migrated_database
from tests.factories import create_organisation
from tests.offers.helpers import Town
from tests.safety.helpers import check_in, my_visit, ok, prepare, pushes, task_at_park, tick

GRACE = timedelta(seconds=600)  # the default grace before the prompt, and before the alarm


@pytest.mark.parametrize(
    ("at", "zone", "words"),
    [
        # New York: daylight time in July (UTC-4), standard time in December (UTC-5)
        (datetime(2026, 7, 1, 16, 0, tzinfo=UTC), "America/New_York", "12:00 EDT"),
        (datetime(2026, 12, 1, 16, 0, tzinfo=UTC), "America/New_York", "11:00 EST"),
        # London, the night the clocks go forward (29 March 2026, 01:00 UTC): 00:59 GMT, 02:00 BST
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "Europe/London", "00:59 GMT"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/London", "02:00 BST"),
        # ... and back (25 October 2026, 01:00 UTC): the hour from 01:00 happens twice
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Europe/London", "01:30 BST"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "Europe/London", "01:30 GMT"),
        (datetime(2026, 7, 1, 16, 0, tzinfo=UTC), "UTC", "16:00 UTC"),
    ],
)
def test_a_time_in_words_is_local_with_its_zone(at: datetime, zone: str, words: str) -> None:
    assert clock(at, ZoneInfo(zone)) == words


async def _overdue_visit(
    client: httpx.AsyncClient, db: AsyncSession, town: Town, due: datetime
) -> str:
    """The worker's task visit at the park, moved to end at `due` (a chosen date)."""
    await prepare(client, town)
    await task_at_park(client, town, minutes=20)
    await check_in(client, town.worker, town.park)
    visit = await my_visit(client, town.worker)
    await db.execute(
        text("UPDATE lone_visits SET started_at = :s, due_at = :d WHERE id = :v"),
        {"s": due - timedelta(minutes=20), "d": due, "v": visit["id"]},
    )
    await db.commit()
    return str(visit["id"])


async def _set_zone(db: AsyncSession, town: Town, zone: str | None) -> None:
    org = await db.get(Organisation, town.org_id)
    assert org is not None
    await accounts_service.set_time_zone(db, org.slug, zone)
    await db.commit()


@pytest.mark.parametrize(
    ("own", "setting", "due", "words"),
    [
        # the organisation's own zone, on a summer and a winter date
        ("America/New_York", "UTC", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), "12:00 EDT"),
        (
            "America/New_York",
            "Europe/Berlin",
            datetime(2026, 12, 1, 16, 0, tzinfo=UTC),
            "11:00 EST",
        ),
        # none of its own: the deployment's setting
        (None, "Europe/Berlin", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), "18:00 CEST"),
        (None, "Europe/Berlin", datetime(2026, 12, 1, 16, 0, tzinfo=UTC), "17:00 CET"),
        # the repeated hour when the clocks go back says which one it is
        ("Europe/London", "UTC", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "01:30 BST"),
        ("Europe/London", "UTC", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "01:30 GMT"),
        # the default: UTC
        (None, "UTC", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), "16:00 UTC"),
    ],
)
async def test_the_prompt_says_the_due_time_in_the_organisations_zone(
    client: httpx.AsyncClient,
    db: AsyncSession,
    *,
    settings: Settings,
    town: Town,
    own: str | None,
    setting: str,
    due: datetime,
    words: str,
) -> None:
    await _set_zone(db, town, own)
    visit_id = await _overdue_visit(client, db, town, due)
    r = await tick(db, settings.model_copy(update={"time_zone": setting}), due + GRACE)
    assert [str(v) for v in r.prompts] == [visit_id]
    [prompt] = await pushes(db, town.org_id)
    assert prompt.body == (
        f"Your visit at Town Park was due to end at {words}. "
        "Tap to extend it by 30 minutes, or check out."
    )
    assert prompt.data == {"visit_id": visit_id, "action": "extend", "minutes": 30}


async def test_the_alarm_says_the_last_known_time_in_the_organisations_zone(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await _set_zone(db, town, "America/New_York")
    due = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    await _overdue_visit(client, db, town, due)
    await tick(db, settings, due + GRACE)
    r = await tick(db, settings, due + 2 * GRACE)
    assert len(r.alarms) == 1
    [alert] = await ok(await client.get("/v1/safety/alerts", headers=town.editor.headers))
    seen = datetime.fromisoformat(alert["last_seen_at"])  # the ground truth of "last known"
    local = seen.astimezone(ZoneInfo("America/New_York"))
    assert local.utcoffset() == timedelta(hours=-4)  # a summer day: daylight time
    [_, alarm] = await pushes(db, town.org_id)
    assert alarm.body == (
        f"Last known: Town Park at {local:%H:%M} EDT. Open the console to acknowledge."
    )
    assert alarm.data["last_seen_at"] == seen.isoformat()  # the data stays exact (UTC)


async def test_an_unknown_zone_is_refused_and_changes_nothing(db: AsyncSession, town: Town) -> None:
    await _set_zone(db, town, "Europe/Paris")
    org = await db.get(Organisation, town.org_id)
    assert org is not None
    for bad in ("Mars/Olympus_Mons", "", " Europe/London", "../../etc/passwd"):
        with pytest.raises(Unprocessable):
            await accounts_service.set_time_zone(db, org.slug, bad)
    await db.refresh(org)
    assert org.time_zone == "Europe/Paris"
    with pytest.raises(ValidationError, match="HEREABOUTS_TIME_ZONE"):
        Settings(time_zone="Mars/Olympus_Mons", jwt_secret="x" * 40)


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_local_time") as u:
        yield u


def test_operators_set_and_clear_an_organisations_zone(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def make() -> str:
        engine = create_engine(get_settings().model_copy(update={"database_url": url}))
        try:
            async with AsyncSession(engine) as s:
                slug = (await create_organisation(s)).slug
                await s.commit()
                return slug
        finally:
            await engine.dispose()

    async def stored(slug: str) -> str | None:
        engine = create_engine(get_settings().model_copy(update={"database_url": url}))
        try:
            async with AsyncSession(engine) as s:
                row = await s.execute(
                    text("SELECT time_zone FROM organisations WHERE slug = :s"), {"s": slug}
                )
                value: str | None = row.scalar_one()
                return value
        finally:
            await engine.dispose()

    monkeypatch.setenv("HEREABOUTS_DATABASE_URL", url)
    monkeypatch.setenv("HEREABOUTS_TIME_ZONE", "Europe/Berlin")
    get_settings.cache_clear()
    try:
        slug = asyncio.run(make())

        def cli(*args: str) -> tuple[int, str]:
            r = CliRunner().invoke(cli_app, ["organisations", "time-zone", slug, *args])
            return r.exit_code, r.output.strip()

        assert cli() == (0, f"{slug}: Europe/Berlin (HEREABOUTS_TIME_ZONE)")
        assert cli("America/New_York") == (0, f"{slug}: America/New_York")
        assert asyncio.run(stored(slug)) == "America/New_York"
        code, out = cli("Mars/Olympus_Mons")
        assert code == 1
        assert "not an IANA time zone" in out
        assert asyncio.run(stored(slug)) == "America/New_York"
        assert cli("--clear") == (0, f"{slug}: Europe/Berlin (HEREABOUTS_TIME_ZONE)")
        assert asyncio.run(stored(slug)) is None
        unknown = CliRunner().invoke(cli_app, ["organisations", "time-zone", "no-such-town", "UTC"])
        assert unknown.exit_code == 1
        assert "No organisation 'no-such-town'" in unknown.output
    finally:
        get_settings.cache_clear()
