"""The retention purge: expired data is gone everywhere, fresh data stays, check-ins are counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.presence import repository as presence_repository
from app.privacy import repository as privacy_repository
from app.privacy import service
from tests import factories
from tests.offers.helpers import quick_staff
from tests.security.people import holdings, person_with_everything


def _older(column: str) -> str:
    """`column - :by`, computed on UTC timestamps: IMMUTABLE arithmetic, which Citus accepts on a
    row's column in an UPDATE (it refuses the STABLE `timestamptz - interval`; make test-citus)."""
    return f"({column} AT TIME ZONE 'UTC' - CAST(:by AS interval)) AT TIME ZONE 'UTC'"


async def age(db: AsyncSession, device_id: object, by: timedelta) -> None:
    """Make every timestamped row about the device `by` older (as if time had passed)."""
    await presence_repository.ensure_ping_partitions(
        db, (datetime.now(UTC) - by - timedelta(days=1)).date(), datetime.now(UTC).date()
    )
    for sql in (
        f"UPDATE pings SET recorded_at = {_older('recorded_at')} WHERE subject_id = :d",
        f"UPDATE checkins SET recorded_at = {_older('recorded_at')} WHERE device_id = :d",
        f"UPDATE presence_events SET occurred_at = {_older('occurred_at')} WHERE device_id = :d",
        f"UPDATE notifications SET created_at = {_older('created_at')} WHERE device_id = :d",
        f"UPDATE outbox o SET created_at = {_older('o.created_at')} FROM notifications n "
        "WHERE n.id = o.notification_id AND n.device_id = :d",
        f"UPDATE push_deliveries x SET attempted_at = {_older('x.attempted_at')} "
        "FROM notifications n WHERE n.id = x.notification_id AND n.device_id = :d",
    ):
        await db.execute(text(sql), {"by": by, "d": device_id})


async def test_purge_removes_expired_data_everywhere_and_keeps_fresh_data(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    old = await person_with_everything(client, db, settings, org)
    fresh = await person_with_everything(client, db, settings, org)
    await age(db, old.resident.id, timedelta(days=91))
    fresh_before = await holdings(db, fresh.resident.id)

    removed = await service.purge(db, settings)

    left = await holdings(db, old.resident.id)
    for kind in ("pings", "checkins", "presence_events", "notifications", "outbox",
                 "push_deliveries"):  # fmt: skip
        assert left[kind] == 0, (kind, left)
    # what is not time-bound stays until the resident erases it: device, settings, subscription
    assert left["devices"] == 1
    assert left["push_subscriptions"] == 1
    assert await holdings(db, fresh.resident.id) == fresh_before
    assert removed["pings"] + len(removed["ping_partitions_dropped"]) > 0
    assert removed["checkins_aggregated"] == 1
    assert removed["events"] > 0
    assert removed["notifications"] == 1
    assert removed["deliveries"] == 1
    counts = (
        await db.execute(
            text("SELECT sum(checkins), sum(people) FROM checkin_counts WHERE geofence_id = :g"),
            {"g": old.place_id},
        )
    ).one()
    assert tuple(counts) == (1, 1)


async def test_each_kind_has_its_own_period(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    p = await person_with_everything(client, db, settings, org)
    # 2 days old: past the 24 h of pings, within the 30 days of events and 90 of check-ins
    await age(db, p.resident.id, timedelta(days=2))
    await service.purge(db, settings)
    left = await holdings(db, p.resident.id)
    assert left["pings"] == 0
    assert left["checkins"] == 1
    assert left["presence_events"] > 0
    assert left["notifications"] == 1
    # 40 days: events, inbox, outbox and delivery log go; the check-in is still identifiable
    await age(db, p.resident.id, timedelta(days=38))
    await service.purge(db, settings)
    left = await holdings(db, p.resident.id)
    assert left["checkins"] == 1
    assert left["presence_events"] == 0
    assert left["notifications"] == 0
    assert left["push_deliveries"] == 0
    # a council that keeps check-ins identifiable for 30 days only
    shorter = settings.model_copy(update={"checkin_identifiable_days": 30})
    assert (await service.purge(db, shorter))["checkins_aggregated"] == 1


async def test_only_one_process_purges_at_a_time(db: AsyncSession, engine: object) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    assert isinstance(engine, AsyncEngine)
    assert await privacy_repository.try_advisory_lock(db, service.PURGE_LOCK_KEY)
    async with engine.connect() as conn:
        other = AsyncSession(bind=conn)
        assert await service.purge_once_guarded(other, Settings()) is None
        await other.close()


def test_ping_retention_has_a_hard_maximum_of_seven_days() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(ping_retention_h=169)


async def test_aggregated_checkins_still_count_in_the_place_statistics(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    app.state.settings = settings.model_copy(update={"stats_min_cell_size": 1})
    org = await factories.create_organisation(db)
    editor = await quick_staff(db, settings, org, Role.editor)
    await db.commit()
    p = await person_with_everything(client, db, settings, org)
    await age(db, p.resident.id, timedelta(days=91))
    params = {
        "bucket": "day",
        "since": (datetime.now(UTC) - timedelta(days=100)).isoformat(),
        "tz": "UTC",
    }
    url = f"/v1/geofences/{p.place_id}/checkins/stats"
    before = (await client.get(url, params=params, headers=editor.headers)).json()["buckets"]
    await service.purge(db, settings)
    await db.commit()
    after = (await client.get(url, params=params, headers=editor.headers)).json()["buckets"]
    assert after == before
    assert [(b["residents_checkins"], b["residents_distinct"]) for b in after] == [(1, 1)]
    left = (await db.execute(text("SELECT count(*) FROM checkins WHERE geofence_id = :g"),
                             {"g": p.place_id})).scalar_one()  # fmt: skip
    assert left == 0


def test_purge_command_prints_what_it_removed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import app as cli_app
    from app.core.config import get_settings

    monkeypatch.setenv("HEREABOUTS_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["purge"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    for kind in ("ping_partitions_dropped", "pings", "checkins_aggregated", "events",
                 "notifications", "outbox", "deliveries"):  # fmt: skip
        assert f"{kind}: " in result.output
