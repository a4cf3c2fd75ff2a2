"""The claim and settle statements do work bounded by the batch, whatever the planner believes.

Autovacuum or ANALYZE running while a big enqueue is still uncommitted records the outbox (and
the notifications) as empty: `reltuples = 0`, every estimate says 1 row. With join conditions
alone the planner then ran nested loops over whole-table scans filtered row by row: batch x
table rows per statement, the push fan-out bench's stall (docs/benchmarks.md). Here pg_class is
given exactly that state inside the test's rolled-back transaction, and the rows the executed
plans threw away are counted (EXPLAIN ANALYZE; no timing).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications import repository as repo
from app.notifications import service
from app.notifications.models import PushSubscription
from app.notifications.schemas import NotificationPayload, Recipient
from tests.factories import create_organisation, create_resident

PEOPLE = 60
SUBS = 5
PER_PERSON = 20  # 60 x 5 x 20 = 6,000 outbox rows, as in the bench
BATCH = 20
# At most one pass over each table (a small table may rightly be scanned whole) plus a join of
# the batch with itself; the stalling plans made one pass over the outbox per claimed row.
BOUND = PEOPLE * SUBS * PER_PERSON + PEOPLE * PER_PERSON + PEOPLE * SUBS + BATCH * BATCH


def rows_thrown_away(plan: dict[str, Any]) -> int:
    """Rows that nodes of an executed plan read and discarded by a filter, over all loops."""
    loops = int(plan.get("Actual Loops", 1))
    own = int(plan.get("Rows Removed by Filter", 0)) + int(
        plan.get("Rows Removed by Join Filter", 0)
    )
    return own * loops + sum(rows_thrown_away(p) for p in plan.get("Plans", []))


async def explain(db: AsyncSession, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = (await db.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params)).scalar_one()
    plan: dict[str, Any] = (orjson.loads(raw) if isinstance(raw, str | bytes) else raw)[0]["Plan"]
    return plan


async def outbox_believed_empty(db: AsyncSession) -> None:
    org = await create_organisation(db)
    items = []
    for p in range(PEOPLE):
        resident = await create_resident(db, org)
        who = Recipient("device", resident.id, org.id)
        for s in range(SUBS):
            db.add(
                PushSubscription(
                    organisation_id=org.id,
                    device_id=resident.id,
                    endpoint=f"https://fcm.googleapis.com/fcm/send/plan-{p}-{s}-{uuid.uuid4()}",
                    origin="https://fcm.googleapis.com",
                    p256dh="B" * 87,
                    auth="A" * 22,
                )
            )
        items += [
            service.Outgoing(recipient=who, payload=NotificationPayload(title=f"n{i}"))
            for i in range(PER_PERSON)
        ]
    await db.flush()
    await service.enqueue_many(db, items)
    await db.execute(text("UPDATE outbox SET next_attempt_at = now() - interval '1 minute'"))
    # What VACUUM/ANALYZE record (tables and indexes) while the rows' inserting transaction is
    # open: some pages, no tuples (density 0, so every estimate is 1 row at any actual size).
    tables = "'outbox'::regclass, 'notifications'::regclass, 'push_subscriptions'::regclass"
    await db.execute(
        text(
            f"UPDATE pg_class SET reltuples = 0, relpages = 1 WHERE oid IN ({tables})"
            f" OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ({tables}))"
        )
    )


async def test_claim_reads_only_its_batch_when_the_outbox_looks_empty(db: AsyncSession) -> None:
    await outbox_believed_empty(db)
    await repo._custom_plans(db)
    plan = await explain(
        db,
        repo.CLAIM_SQL.text,
        {"limit": BATCH, "lease_s": 60.0, "token": str(uuid.uuid4()), "busy": []},
    )
    assert plan["Actual Rows"] == BATCH
    assert rows_thrown_away(plan) <= BOUND


async def test_settling_a_batch_reads_only_its_rows_when_the_outbox_looks_empty(
    db: AsyncSession,
) -> None:
    await outbox_believed_empty(db)
    jobs = await repo.claim(db, BATCH, 60.0, [])
    assert len(jobs) == BATCH
    await repo._custom_plans(db)
    plan = await explain(
        db,
        repo.FINISH_SQL.text,
        {
            "ids": [j.id for j in jobs],
            "tokens": [j.lease_token for j in jobs],
            "statuses": ["delivered"] * BATCH,
            "delays": [0.0] * BATCH,
            "errors": [None] * BATCH,
        },
    )
    assert rows_thrown_away(plan) <= BOUND
    settled = await db.execute(text("SELECT count(*) FROM outbox WHERE status = 'delivered'"))
    assert settled.scalar_one() == BATCH
