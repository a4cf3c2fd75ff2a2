"""The rows every evaluated fix updates are updated in place (HOT), even on full tables.

Each fix's write updates its subject's `presence_subjects` row (last fix, stay), and its
`presence` rows at the places it is in or near where the fix changes what is pending there
(evidence, pending fixes) or the state; a fix that changes nothing there but the time leaves
the row alone (its last fix is the subject's). Neither table indexes a column the write
updates, so PostgreSQL can keep the new version on the row's page without
new index entries (a HOT update: less WAL, no index growth), but only while that page has
room; migration 0045 leaves 30 % of each page free. The tables here are filled with other
subjects' rows right after ours, as a city's subjects fill them, so that without the room the
page holding our rows is full and the updates are not HOT. Judged by PostgreSQL's own counts
for this transaction (`pg_stat_get_xact_tuples_*`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import Settings
from app.presence import service
from app.presence.models import SubjectKind
from app.privacy import repository as privacy_repository
from tests.factories import create_resident
from tests.presence.helpers import at, create_circle

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
OTHERS = 600  # other subjects' rows: several pages of each table


async def _updates(db: AsyncSession, table: str) -> tuple[int, int]:
    row = (
        await db.execute(
            text(
                "SELECT pg_stat_get_xact_tuples_updated(CAST(:t AS regclass)), "
                "pg_stat_get_xact_tuples_hot_updated(CAST(:t AS regclass))"
            ),
            {"t": table},
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_each_fix_updates_its_subject_and_presence_rows_in_place(
    db: AsyncSession, settings: Settings, org: Organisation
) -> None:
    place = await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30)
    res = await create_resident(db, org)
    subject = service.Subject(SubjectKind.device, res.id, org.id)
    now = datetime.now(UTC)

    def fix(i: int, out_m: float = 0.0) -> service.PingInput:
        # standing inside the place, or `out_m` metres beyond its edge (an exit pending)
        lon, lat = at(3.0 * (i % 3), 2.0 * (i % 2) + (40 + out_m if out_m else 0))
        return service.PingInput(f"f{i:03d}", lon, lat, T0 + timedelta(seconds=20 * i), 8.0)

    # the first fixes create the subject's row and its presence row at the place
    for i in range(3):
        await service.ingest_ping_batch(db, settings, subject, [fix(i)], now=now)
    # then other subjects' rows fill the pages after ours (and ours, up to the table's fill)
    await db.execute(
        text(
            "INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id) "
            "SELECT gen_random_uuid(), 'device', :org FROM generate_series(1, :n)"
        ),
        {"org": org.id, "n": OTHERS},
    )
    await db.execute(
        text(
            "INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id, "
            "state, since, last_fix_at, dwell_emitted) "
            "SELECT gen_random_uuid(), :g, 'device', :org, 'inside', :t, :t, false "
            "FROM generate_series(1, :n)"
        ),
        {"org": org.id, "g": place, "t": T0, "n": OTHERS},
    )
    before = {t: await _updates(db, t) for t in ("presence_subjects", "presence")}
    # the new versions stay on the page within this one transaction (nothing is pruned before
    # it ends): a subject row with its stay is ~0.9 KB, and 30 % of a page holds two more.
    # Out of the place (one fix out never exits: the presence row records the exit pending),
    # then back in (the row forgets it): every fix changes both rows
    fixes = 2
    for i, out_m in ((3, 50.0), (4, 0.0)):
        result = await service.ingest_ping_batch(db, settings, subject, [fix(i, out_m)], now=now)
        assert result.accepted == 1
        assert not result.events
    for table, (updated0, hot0) in before.items():
        updated, hot = await _updates(db, table)
        # every fix updated the row, and every update stayed on its page
        assert updated - updated0 >= fixes, table
        assert hot - hot0 == updated - updated0, table
    # a fix that changes nothing at the place but the time: only the subject's row is written
    before = {t: await _updates(db, t) for t in ("presence_subjects", "presence")}
    result = await service.ingest_ping_batch(db, settings, subject, [fix(5)], now=now)
    assert result.accepted == 1
    subjects, presence = [await _updates(db, t) for t in ("presence_subjects", "presence")]
    assert subjects[0] - before["presence_subjects"][0] == 1
    assert presence[0] - before["presence"][0] == 0
    last_fix_at = (
        await db.execute(
            text("SELECT last_fix_at FROM presence_subjects WHERE subject_id = :s"), {"s": res.id}
        )
    ).scalar_one()
    assert last_fix_at == fix(5).recorded_at
    shown = await service.presence_of(db, res.id)
    assert [(r.geofence_id, r.state, r.last_fix_at) for r in shown] == [
        (place, "inside", fix(5).recorded_at)
    ]
    exported = (await privacy_repository.export_rows(db, res.id))["presence"]
    assert [(r["geofence_id"], r["state"], r["last_fix_at"]) for r in exported] == [
        (place, "inside", fix(5).recorded_at)
    ]
