"""Migration 0033 moves Web Push and webhook outbox rows into the one outbox and back, keeping
their ids (the delivery logs point at them), and seals / unseals webhook signing secrets.
The webhook rows' subject comes from their presence event (not built here: it needs a place)
or from a payload that carried the real id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.cluster import EmbeddedCluster
from app.core.config import get_settings
from app.core.ops import alembic_config
from app.webhooks import secretbox

REVISION = "0033"
SECRET = "whsec_" + "QUJD" * 11


def run(url: str, sql: str, **params: Any) -> list[Any]:
    async def go() -> list[Any]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql), params)
                return list(result) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def scratch(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    name = "hereabouts_outbox_migration"
    pg_cluster.drop_database(name)
    pg_cluster.ensure_database(name)
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


def test_rows_move_into_the_one_outbox_and_back_with_their_ids_and_secrets_are_sealed(
    scratch: str,
) -> None:
    cfg = alembic_config(scratch)
    cfg.attributes["configure_logger"] = False
    script = ScriptDirectory.from_config(cfg).get_revision(REVISION)
    assert script is not None
    before = script.down_revision
    assert isinstance(before, str)
    command.upgrade(cfg, before)

    org, device, sub, note = (uuid.uuid4() for _ in range(4))
    push_row, endpoint, hook_row, event = (uuid.uuid4() for _ in range(4))
    pseudonymous = uuid.uuid4()
    run(scratch, "INSERT INTO organisations (id, slug, name) VALUES (:o, 'm', 'M')", o=org)
    run(scratch, "INSERT INTO devices (id, organisation_id, token_hash) VALUES (:d, :o, 'h')",
        d=device, o=org)  # fmt: skip
    run(
        scratch,
        "INSERT INTO push_subscriptions (id, organisation_id, device_id, endpoint, origin, p256dh,"
        " auth) VALUES (:s, :o, :d, 'https://push.example/x', 'https://push.example', 'p', 'a')",
        s=sub, o=org, d=device,
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO notifications (id, organisation_id, device_id, kind, title, body, topic,"
        " urgency, ttl_s, decision, payload) VALUES (:n, :o, :d, 'k', 't', '', 'topic', 'normal',"
        " 60, 'send', '{}')",
        n=note, o=org, d=device,
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO push_outbox (id, notification_id, subscription_id, organisation_id, origin,"
        " status, attempts, expires_at) VALUES (:i, :n, :s, :o, 'https://push.example',"
        " 'delivered', 1, now() + interval '1 day')",
        i=push_row, n=note, s=sub, o=org,
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO push_deliveries (id, organisation_id, outbox_id, notification_id, attempt,"
        " attempted_at, push_origin, status) VALUES (gen_random_uuid(), :o, :i, :n, 1, now(),"
        " 'https://push.example', 'delivered')",
        o=org, i=push_row, n=note,
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO webhook_endpoints (id, organisation_id, url, description, event_types,"
        " include_person_ids, secret, pseudonym_key, status) VALUES (:e, :o, 'https://r.example/h',"
        " '', ARRAY['*'], false, :s, 'k', 'enabled')",
        e=endpoint, o=org, s=SECRET,
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO webhook_messages (id, organisation_id, endpoint_id, msg_id, event_id,"
        " event_type, occurred_at, payload, status) VALUES (:m, :o, :e, 'msg_1', :v,"
        " 'offer.redeemed', now(), :p, 'pending'), (:m2, :o, :e, 'msg_2', :v,"
        " 'offer.redeemed', now(), :p2, 'delivered')",
        m=hook_row, o=org, e=endpoint, v=event, m2=pseudonymous,
        # an endpoint that was given real ids names the person; a pseudonym cannot be traced
        p=f'{{"data": {{"person": {{"kind": "device", "id": "{device}"}}}}}}',
        p2='{"data": {"person": {"kind": "device", "id": "psn_0123"}}}',
    )  # fmt: skip
    run(
        scratch,
        "INSERT INTO webhook_attempts (id, organisation_id, endpoint_id, message_id, msg_id,"
        " attempt, attempted_at, status) VALUES (gen_random_uuid(), :o, :e, :m, 'msg_1', 1, now(),"
        " 'retry')",
        o=org, e=endpoint, m=hook_row,
    )  # fmt: skip

    command.upgrade(cfg, REVISION)
    moved = run(
        scratch,
        "SELECT id, channel, status, notification_id, endpoint_id, msg_id, subject_id FROM outbox"
        " ORDER BY channel, msg_id",
    )
    assert moved == [
        (hook_row, "webhook", "pending", None, endpoint, "msg_1", device),
        (pseudonymous, "webhook", "delivered", None, endpoint, "msg_2", None),
        (push_row, "webpush", "delivered", note, None, None, None),
    ]
    (stored,) = run(scratch, "SELECT secret FROM webhook_endpoints")
    assert SECRET not in stored[0]
    assert secretbox.open_sealed(get_settings(), stored[0]) == SECRET
    # the logs still point at their rows, now through the new foreign keys
    logged = "SELECT count(*) FROM push_deliveries WHERE outbox_id = :i"
    assert run(scratch, logged, i=push_row) == [(1,)]
    run(scratch, "DELETE FROM outbox WHERE id = :m", m=hook_row)
    assert run(scratch, "SELECT count(*) FROM webhook_attempts") == [(0,)]  # cascaded
    run(
        scratch,
        "INSERT INTO outbox (id, channel, organisation_id, status, endpoint_id, msg_id, event_type,"
        " occurred_at, payload) VALUES (:m, 'webhook', :o, 'pending', :e, 'msg_1',"
        " 'place.entered', now(), '{}')",
        m=hook_row, o=org, e=endpoint,
    )  # fmt: skip

    command.downgrade(cfg, before)
    assert run(scratch, "SELECT id, status FROM push_outbox") == [(push_row, "delivered")]
    assert run(scratch, "SELECT id, msg_id FROM webhook_messages ORDER BY msg_id") == [
        (hook_row, "msg_1"),
        (pseudonymous, "msg_2"),
    ]
    assert run(scratch, "SELECT secret FROM webhook_endpoints") == [(SECRET,)]
    assert run(scratch, "SELECT to_regclass('outbox')") == [(None,)]
