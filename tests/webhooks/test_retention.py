"""The retention purge removes the webhook log and finished messages past their period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.privacy import service as privacy_service
from app.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from tests import factories


async def test_purge_removes_old_finished_messages_and_attempts_and_keeps_pending_ones(
    db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    ep = WebhookEndpoint(
        id=uuid.uuid4(),
        organisation_id=org.id,
        url="https://receiver.example/h",
        description="",
        event_types=["*"],
        include_person_ids=False,
        secret="whsec_" + "A" * 44,
        pseudonym_key="00" * 32,
        status="enabled",
    )
    db.add(ep)
    await db.flush()
    now = datetime.now(UTC)
    old = now - timedelta(days=settings.delivery_log_retention_days + 1)
    fresh = now - timedelta(days=1)

    def message(status: str, at: datetime) -> WebhookMessage:
        return WebhookMessage(
            id=uuid.uuid4(),
            organisation_id=org.id,
            endpoint_id=ep.id,
            msg_id="msg_" + uuid.uuid4().hex,
            event_type="place.entered",
            occurred_at=at,
            payload="{}",
            status=status,
            created_at=at,
            finished_at=None if status == "pending" else at,
        )

    messages = {
        "old_delivered": message("delivered", old),
        "old_dead": message("dead", old),
        "old_pending": message("pending", old),
        "fresh_delivered": message("delivered", fresh),
    }
    db.add_all(messages.values())
    await db.flush()
    for name, m in messages.items():
        db.add(
            WebhookAttempt(
                organisation_id=org.id,
                endpoint_id=ep.id,
                message_id=m.id,
                msg_id=m.msg_id,
                attempt=1,
                attempted_at=old if name.startswith("old") else fresh,
                status="delivered",
            )
        )
    await db.flush()

    removed = await privacy_service.purge(db, settings)

    left = set((await db.execute(select(WebhookMessage.id))).scalars())
    assert left == {messages["old_pending"].id, messages["fresh_delivered"].id}
    assert removed["outbox"] == 2  # the one outbox: only webhook rows exist here
    attempts = (await db.execute(select(func.count()).select_from(WebhookAttempt))).scalar_one()
    assert attempts == 1  # the fresh one; the old pending message's attempt is past its period
    assert removed["webhook_attempts"] >= 1
