"""Audit log of staff actions: who changed which place, offer, task or user, and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey


class AuditEntry(UUIDPrimaryKey, Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_org_at", "organisation_id", "at"),
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    # kept when the staff account is deleted, so the history stays explainable
    actor_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    actor_email: Mapped[str | None] = mapped_column(String(320), default=None)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    at: Mapped[datetime] = mapped_column(server_default=text("now()"))
