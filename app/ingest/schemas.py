"""Pydantic shapes of the ingest endpoints' answers and of ingest keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.presence.schemas import PingIssue


class IngestSummary(BaseModel):
    accepted: int = Field(description="New pings stored by this request.")
    duplicates: int = Field(description="Fixes already stored (a retry) or repeated.")
    rejected: list[PingIssue] = Field(description="Fixes not stored, with the reason.")
    flagged: list[PingIssue] = Field(
        default_factory=list, description="Stored fixes that cannot trigger (accuracy, …)."
    )


class OverlandResult(IngestSummary):
    result: Literal["ok"] = Field(
        "ok", description='Overland deletes its batch only on {"result": "ok"}.'
    )


class IngestKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(
        default=None, max_length=100, description="A name to recognise it by (e.g. the phone)."
    )


class IngestKeyRead(BaseModel):
    id: uuid.UUID
    label: str | None
    created_at: datetime


class IngestKeyCreated(IngestKeyRead):
    key: str = Field(description="The key itself: shown this once, only its hash is stored.")
