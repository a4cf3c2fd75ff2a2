"""Pydantic shapes of the ingest endpoints' answers and of ingest keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ingest.setup import GpsApp
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
        default=None,
        max_length=100,
        description="A name to recognise it by (e.g. the phone); default: the app's name.",
    )
    app: GpsApp | None = Field(
        default=None,
        description="The GPS app it is for: the answer then carries that app's setup link and "
        "QR code.",
    )


class IngestKeyRead(BaseModel):
    id: uuid.UUID
    label: str | None
    created_at: datetime


class SetupSetting(BaseModel):
    name: str = Field(description="The setting as the app names it.")
    value: str


class IngestSetup(BaseModel):
    app: GpsApp
    endpoint: str = Field(description="The URL the app posts to.")
    link: str = Field(description="The link the app imports (tap it on the phone, or scan it).")
    qr_svg: str = Field(description="The link as a QR code: an SVG `data:` URI for an <img>.")
    settings: list[SetupSetting] = Field(description="The same, to type into the app by hand.")
    config: dict[str, Any] | None = Field(
        default=None, description="OwnTracks: the configuration file (.otrc) content."
    )


class IngestKeyCreated(IngestKeyRead):
    key: str = Field(description="The key itself: shown this once, only its hash is stored.")
    setup: IngestSetup | None = Field(
        default=None, description="The app's setup, when `app` was given (holds the key too)."
    )
