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
for each fix's transaction (`pg_stat_get_xact_tuples_*`). Each fix is committed on its own, as
the evaluator commits each set: within one long transaction every version of a row stays on
its page, which is not what a page's room is for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.presence import service
from app.presence.models import SubjectKind
from app.privacy import repository as privacy_repository
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import at, create_circle, remove_committed

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
OTHERS = 600  # other subjects' rows: several pages of each table
TABLES = ("presence_subjects", "presence")


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


async def _ingest(
    engine: AsyncEngine, settings: Settings, subject: service.Subject, fix: service.PingInput
) -> tuple[service.BatchResult, dict[str, tuple[int, int]]]:
    """One fix in its own committed transaction, as the evaluator writes each set.

    Returns the result and, per table, this transaction's updates and HOT updates (read before
    the commit). Earlier fixes' old versions are dead once their transaction has committed, and
    PostgreSQL prunes them when a page runs short, so the room a page keeps is for one new
    version per fix, not for every version a long transaction would stack up.
    """
    async with AsyncSession(engine, expire_on_commit=False) as s, s.begin():
        result = await service.ingest_ping_batch(s, settings, subject, [fix], now=datetime.now(UTC))
        counts = {t: await _updates(s, t) for t in TABLES}
    return result, counts


async def test_each_fix_updates_its_subject_and_presence_rows_in_place(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as setup, setup.begin():
        org = await create_organisation(setup)
        place = await create_circle(setup, org.id, 0, 0, 40, trigger_distance_m=30)
        res = await create_resident(setup, org)
    subject = service.Subject(SubjectKind.device, res.id, org.id)

    def fix(i: int, out_m: float = 0.0) -> service.PingInput:
        # standing inside the place, or `out_m` metres beyond its edge (an exit pending)
        lon, lat = at(3.0 * (i % 3), 2.0 * (i % 2) + (40 + out_m if out_m else 0))
        return service.PingInput(f"f{i:03d}", lon, lat, T0 + timedelta(seconds=20 * i), 8.0)

    try:
        # the first fixes create the subject's row and its presence row at the place
        for i in range(3):
            await _ingest(engine, settings, subject, fix(i))
        # Their old versions are dead: VACUUM frees their room (as PostgreSQL's pruning would,
        # only now), then other subjects' rows fill the pages, ours up to the table's fill
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in TABLES:
                await conn.execute(text(f"VACUUM {table}"))
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id) "
                    "SELECT gen_random_uuid(), 'device', :org FROM generate_series(1, :n)"
                ),
                {"org": org.id, "n": OTHERS},
            )
            await conn.execute(
                text(
                    "INSERT INTO presence (subject_id, geofence_id, subject_kind, "
                    "organisation_id, state, since, last_fix_at, dwell_emitted) "
                    "SELECT gen_random_uuid(), :g, 'device', :org, 'inside', :t, :t, false "
                    "FROM generate_series(1, :n)"
                ),
                {"org": org.id, "g": place, "t": T0, "n": OTHERS},
            )
        # Out of the place (one fix out never exits: the presence row records the exit pending),
        # then back in (the row forgets it): every fix changes both rows, and every update
        # stays on its row's page
        for i, out_m in ((3, 50.0), (4, 0.0)):
            result, counts = await _ingest(engine, settings, subject, fix(i, out_m))
            assert result.accepted == 1
            assert not result.events
            for table, (updated, hot) in counts.items():
                assert updated >= 1, (i, table)
                assert hot == updated, (i, table)
        # a fix that changes nothing at the place but the time: only the subject's row is written
        result, counts = await _ingest(engine, settings, subject, fix(5))
        assert result.accepted == 1
        assert counts["presence_subjects"][0] == 1
        assert counts["presence"][0] == 0
        async with AsyncSession(engine) as db:
            last_fix_at = (
                await db.execute(
                    text("SELECT last_fix_at FROM presence_subjects WHERE subject_id = :s"),
                    {"s": res.id},
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
    finally:
        # the filler subjects and presence rows go with the organisation
        await remove_committed(engine, org.id, [res.id])
