"""Where tables live on Citus (app/core/citus.py, migration 0027); single-node is untouched.

The Citus tests run under `make test-citus` (a coordinator and two workers); on single-node
PostgreSQL the placement must leave no Citus trace at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from app.core import citus
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.ops import alembic_config
from app.models import metadata
from tests.conftest import ON_CITUS, empty_tables, migrated_database

citus_only = pytest.mark.skipif(not ON_CITUS, reason="runs under `make test-citus`")
single_only = pytest.mark.skipif(ON_CITUS, reason="runs under `make test`")


async def _placement(db: AsyncSession) -> dict[str, tuple[str, str]]:
    rows = await db.execute(
        text(
            "SELECT table_name::text, citus_table_type, distribution_column FROM citus_tables "
            "WHERE table_name::text NOT LIKE 'pings\\_p%'"
        )
    )
    return {r[0]: (r[1], r[2]) for r in rows}


@citus_only
async def test_every_table_is_distributed_by_subject_or_a_reference_table(
    db: AsyncSession,
) -> None:
    placement = await _placement(db)
    public = set(
        (
            await db.execute(
                text(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relkind IN ('r', 'p') AND NOT relispartition "
                    # the coordinator's copies of reference tables (the app's connections see
                    # shard placements: tests/conftest.py APP_CONNECT_ARGS)
                    "AND NOT relation_is_a_known_shard(oid)"
                )
            )
        ).scalars()
    )
    expected = (set(metadata.tables) | public) - citus.LOCAL_ONLY
    assert expected - set(placement) == set(), "tables Citus does not know"
    for table in expected:
        kind, column = placement[table]
        if table in citus.DISTRIBUTED:
            assert (kind, column) == ("distributed", citus.DISTRIBUTED[table]), table
        else:
            assert kind == "reference", table
    colocations = (
        await db.execute(
            text(
                "SELECT DISTINCT colocation_id FROM citus_tables "
                "WHERE citus_table_type = 'distributed'"
            )
        )
    ).all()
    assert len(colocations) == 1, "the distributed tables are co-located"


@citus_only
async def test_ping_day_partitions_made_at_run_time_are_distributed(db: AsyncSession) -> None:
    made = await db.scalar(
        text("SELECT hereabouts_ensure_ping_partitions(DATE '2031-05-01', DATE '2031-05-02')")
    )
    assert made == 2
    rows = await db.execute(
        text(
            "SELECT table_name::text, citus_table_type FROM citus_tables "
            "WHERE table_name::text IN ('pings_p20310501', 'pings_p20310502')"
        )
    )
    assert dict(rows.all()) == {
        "pings_p20310501": "distributed",
        "pings_p20310502": "distributed",
    }


@pytest.fixture
def fresh_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_citus_place") as url:
        yield url


@citus_only
def test_a_table_a_later_migration_adds_is_placed_at_head(fresh_url: str) -> None:
    async def run(sql: str) -> list[tuple[object, ...]]:
        engine = create_async_engine(fresh_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return [tuple(r) for r in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    # what a later migration does: a table with a foreign key to a reference table (Citus
    # makes it a Citus local table on the coordinator), then `alembic upgrade head`
    asyncio.run(
        run(
            "CREATE TABLE later_things (id uuid PRIMARY KEY, "
            "organisation_id uuid REFERENCES organisations (id))"
        )
    )
    cfg = alembic_config(fresh_url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    rows = asyncio.run(
        run("SELECT citus_table_type FROM citus_tables WHERE table_name = 'later_things'::regclass")
    )
    assert rows == [("reference",)]


@citus_only
def test_presence_moves_between_reference_and_by_subject_with_migration_0036(
    fresh_url: str,
) -> None:
    """Databases placed before 0036 held presence and the subjects' rows as reference tables:
    the downgrade puts them back there, the upgrade distributes them again, rows kept."""

    async def run(sql: str) -> list[tuple[object, ...]]:
        engine = create_async_engine(fresh_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return [tuple(r) for r in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    placement = (
        "SELECT table_name::text, citus_table_type, colocation_id = (SELECT colocation_id "
        "FROM citus_tables WHERE table_name = 'pings'::regclass) FROM citus_tables "
        "WHERE table_name::text IN ('presence', 'presence_subjects') ORDER BY 1"
    )
    org, subject = "7d0f2c0e-0000-4000-8000-000000000001", "7d0f2c0e-0000-4000-8000-000000000002"
    asyncio.run(run(f"INSERT INTO organisations (id, slug, name) VALUES ('{org}', 'o-0036', 'o')"))
    asyncio.run(
        run(
            "INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id) "
            f"VALUES ('{subject}', 'device', '{org}')"
        )
    )
    assert asyncio.run(run(placement)) == [
        ("presence", "distributed", True),
        ("presence_subjects", "distributed", True),
    ]
    cfg = alembic_config(fresh_url)
    cfg.attributes["configure_logger"] = False
    command.downgrade(cfg, "0035")
    assert [r[:2] for r in asyncio.run(run(placement))] == [
        ("presence", "reference"),
        ("presence_subjects", "reference"),
    ]
    command.upgrade(cfg, "head")
    assert asyncio.run(run(placement)) == [
        ("presence", "distributed", True),
        ("presence_subjects", "distributed", True),
    ]
    kept = asyncio.run(run("SELECT subject_id::text FROM presence_subjects"))
    assert kept == [(subject,)]
    fks = asyncio.run(
        run(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid IN ('presence'::regclass, 'presence_subjects'::regclass) ORDER BY 1"
        )
    )
    assert len(fks) == 3  # presence: organisation and place; presence_subjects: organisation


QUEUE_PLACEMENT = (
    "SELECT p.partmethod::text, column_to_column_name(p.logicalrelid, p.partkey)::text, "
    "p.colocationid = (SELECT colocationid FROM pg_dist_partition "
    "WHERE logicalrelid = 'pings'::regclass), "
    "(SELECT array_agg(k.attname::text ORDER BY k.attname) FROM pg_constraint c "
    "JOIN pg_attribute k ON k.attrelid = c.conrelid AND k.attnum = ANY(c.conkey) "
    "WHERE c.conrelid = 'ping_queue'::regclass AND c.contype = 'p') "
    "FROM pg_dist_partition p WHERE p.logicalrelid = 'ping_queue'::regclass"
)


@citus_only
async def test_the_202_queue_is_distributed_by_subject_with_pings(db: AsyncSession) -> None:
    """Migration 0043: `ping_queue` is hash-distributed by subject in the co-location group of
    `pings` (not a reference table copied to every node), its key includes the subject, and
    `seq` is still an identity that the coordinator draws in order."""
    row = (await db.execute(text(QUEUE_PLACEMENT))).one()
    assert tuple(row) == ("h", "subject_id", True, ["seq", "subject_id"])
    identity = await db.scalar(
        text(
            "SELECT attidentity FROM pg_attribute WHERE attrelid = 'ping_queue'::regclass "
            "AND attname = 'seq'"
        )
    )
    assert identity in ("d", b"d")  # "char" comes back as bytes through asyncpg
    fks = await db.scalar(
        text(
            "SELECT array_agg(confrelid::regclass::text) FROM pg_constraint "
            "WHERE conrelid = 'ping_queue'::regclass AND contype = 'f'"
        )
    )
    assert fks == ["organisations"]
    indexes = await db.scalar(
        text("SELECT count(*) FROM pg_indexes WHERE tablename = 'ping_queue'")
    )
    # the key and (subject_id, client_id); the organisation's index went in migration 0045
    assert indexes == 2


@citus_only
def test_the_queue_moves_between_reference_and_by_subject_with_migration_0043(
    fresh_url: str,
) -> None:
    """Databases placed before 0043 held the queue as a reference table keyed by `seq`: the
    downgrade puts it back there, the upgrade distributes it again; queued rows, their `seq`
    and the identity's next value are kept both ways."""

    async def run(sql: str) -> list[tuple[object, ...]]:
        engine = create_async_engine(fresh_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return [tuple(r) for r in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    org = "7d0f2c0e-0000-4000-8000-000000000043"
    subjects = [f"7d0f2c0e-0000-4000-8000-0000000004{i:02d}" for i in range(6)]
    asyncio.run(run(f"INSERT INTO organisations (id, slug, name) VALUES ('{org}', 'o-0043', 'o')"))
    queue_row = (
        "INSERT INTO ping_queue (subject_id, subject_kind, organisation_id, client_id, "
        "recorded_at, lon, lat) VALUES ('{s}', 'device', '" + org + "', '{c}', now(), 0, 0) "
        "RETURNING seq"
    )
    seqs = [int(str(asyncio.run(run(queue_row.format(s=s, c="a")))[0][0])) for s in subjects]
    queued = "SELECT seq, subject_id::text, client_id FROM ping_queue ORDER BY seq"
    before = asyncio.run(run(queued))
    assert asyncio.run(run(QUEUE_PLACEMENT)) == [("h", "subject_id", True, ["seq", "subject_id"])]
    cfg = alembic_config(fresh_url)
    cfg.attributes["configure_logger"] = False
    command.downgrade(cfg, "0042")
    assert asyncio.run(run(QUEUE_PLACEMENT)) == [("n", None, False, ["seq"])]
    assert asyncio.run(run(queued)) == before
    next_seq = int(str(asyncio.run(run(queue_row.format(s=subjects[0], c="b")))[0][0]))
    assert next_seq > max(seqs)
    command.upgrade(cfg, "head")
    assert asyncio.run(run(QUEUE_PLACEMENT)) == [("h", "subject_id", True, ["seq", "subject_id"])]
    after = asyncio.run(run(queued))
    assert after[: len(before)] == before
    assert len(after) == len(before) + 1
    assert int(str(asyncio.run(run(queue_row.format(s=subjects[1], c="c")))[0][0])) > next_seq
    # the organisation's deletion still reaches its queued fixes (the foreign key is kept)
    asyncio.run(run(f"DELETE FROM organisations WHERE id = '{org}'"))
    assert asyncio.run(run("SELECT count(*) FROM ping_queue")) == [(0,)]


@single_only
async def test_single_node_has_no_citus_and_placement_does_nothing(db: AsyncSession) -> None:
    conn = await db.connection()
    assert await conn.run_sync(citus.place_tables) == []
    assert await conn.run_sync(citus.has_citus) is False
    # the token-revocation trigger function is migration 0020's, without the coordinator guard
    body = await db.scalar(
        text("SELECT prosrc FROM pg_proc WHERE proname = 'hereabouts_device_token_revoked'")
    )
    assert body is not None
    assert "pg_dist_local_group" not in body
    # migration 0043 changes the queue's key on Citus only
    key = await db.scalar(
        text(
            "SELECT array_agg(k.attname::text) FROM pg_constraint c JOIN pg_attribute k "
            "ON k.attrelid = c.conrelid AND k.attnum = ANY(c.conkey) "
            "WHERE c.conrelid = 'ping_queue'::regclass AND c.contype = 'p'"
        )
    )
    assert key == ["seq"]


@citus_only
def test_shards_move_while_pings_flow_without_errors_or_losses(
    fresh_url: str, pg_cluster: EmbeddedCluster
) -> None:
    """Move a shard group to the other worker and back (logical replication) while batches
    keep arriving; `bench.citus --rebalance` drains and rebalances a whole worker."""
    from app.core.config import Environment, Settings
    from app.presence.groups import PingGroups
    from app.presence.service import BatchRequest
    from bench.citus import _batch, _load, move_one_shard_group

    assert isinstance(pg_cluster, citus.CitusCluster)
    ports = [w.port for w in pg_cluster.workers]

    async def scenario() -> tuple[int, int, list[str], int, str]:
        engine = create_async_engine(fresh_url, pool_size=4)
        settings = Settings(environment=Environment.test, database_url=fresh_url, log_json=False)
        subjects = await _load(engine, devices=12, places=36)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        start = datetime.now(UTC) - timedelta(hours=20)  # within retention, in the past
        sent = 0
        failures: list[str] = []
        done = asyncio.Event()

        # the API's own path for a batch: grouped with others, run again after a deadlock or a
        # serialization failure, anything else fails the request
        groups = PingGroups(settings)

        async def pinger(i: int) -> None:
            nonlocal sent
            n = 0
            while not done.is_set() or n < 2:
                try:
                    async with sessions() as s:
                        out = await groups.ingest(s, BatchRequest(subjects[i], _batch(i, n, start)))
                    sent += out.accepted
                except Exception as exc:  # noqa: BLE001 - listed: the test wants none
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                n += 1

        tasks = [asyncio.create_task(pinger(i)) for i in range(len(subjects))]
        try:
            report = await move_one_shard_group(engine, ports[0], ports[1])
        finally:
            done.set()
            await asyncio.gather(*tasks)
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT count(*) FROM pings"))).scalar_one()
            nodes = (
                await conn.execute(
                    text(
                        "SELECT count(DISTINCT nodeport) FROM citus_shards "
                        "WHERE table_name = 'pings'::regclass"
                    )
                )
            ).scalar_one()
        await engine.dispose()
        return sent, int(stored), failures, int(nodes), report

    sent, stored, failures, nodes, report = asyncio.run(scenario())
    assert failures == [], f"{report}; {len(failures)} batches failed: {failures[:5]}"
    assert sent > 0
    assert stored == sent, report
    assert nodes == 2, report  # both workers hold pings shards again


async def test_emptying_tables_for_a_test_reaches_what_truncate_cascade_would(
    db: AsyncSession, settings: Settings
) -> None:
    """The end-to-end fixtures empty their database with `empty_tables` (DELETE on Citus, where
    TRUNCATE ... CASCADE takes seconds): the tables named and every table that references one,
    the ping path's per-subject tables included, are emptied."""
    from app.presence import service
    from app.presence.models import SubjectKind
    from tests.factories import create_organisation, create_resident
    from tests.presence.helpers import T0, at, create_circle

    org = await create_organisation(db)
    await create_circle(db, org.id, 0, 0, 40, dwell_s=60)
    resident = await create_resident(db, org)
    pings = [
        service.PingInput(f"e{i}", *at(5, 0), T0 + timedelta(seconds=10 * i), accuracy_m=10.0)
        for i in range(10)
    ]
    subject = service.Subject(SubjectKind.device, resident.id, org.id)
    result = await service.ingest_ping_batch(db, settings, subject, pings)
    assert result.events  # presence, its subject row and events were written
    owned = ["organisations", "devices", "geofences", "pings", "presence", "presence_subjects"]
    owned.append("presence_events")
    conn = await db.connection()
    for table in owned:
        assert await conn.scalar(text(f"SELECT count(*) FROM {table}")), table
    await empty_tables(conn, "pings", "organisations")  # pings have no foreign key: named
    for table in owned:
        assert await conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table
