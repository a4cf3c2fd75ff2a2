"""Staff-side Open311 payloads (services, api keys, settings, reports with contact fields).

The GeoReport side (`/open311/v2/`) is form-encoded in and JSON/XML out as the specification
defines it; those documents are built in `service.py` / `formats.py`, not here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import Flag
from app.tasks.models import Priority

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ServiceCode = Annotated[str, Field(pattern=CODE_PATTERN, examples=["fly-tipping"])]
AttributeCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Short = Annotated[str, Field(max_length=500)]
MAX_ATTRIBUTES = 50


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Datatype(StrEnum):
    string = "string"
    number = "number"
    datetime = "datetime"
    text = "text"
    singlevaluelist = "singlevaluelist"
    multivaluelist = "multivaluelist"


class AttributeValue(StrictModel):
    key: Annotated[str, Field(min_length=1, max_length=100)]
    name: Annotated[str, Field(min_length=1, max_length=200)]


class AttributeDef(StrictModel):
    """One question a client asks the reporter (the spec's service definition attribute)."""

    code: AttributeCode
    datatype: Datatype = Datatype.string
    required: Flag = False
    variable: Flag = Field(default=True, description="false: informational text, no answer.")
    description: Annotated[str, Field(min_length=1, max_length=500)]
    datatype_description: Short = ""
    order: int = Field(default=0, ge=0, le=1000)
    values: list[AttributeValue] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _lists_have_values(self) -> Self:
        lists = (Datatype.singlevaluelist, Datatype.multivaluelist)
        if self.datatype in lists and not self.values:
            raise ValueError(f"{self.datatype.value} attributes need values")
        if self.datatype not in lists and self.values:
            raise ValueError("only list attributes have values")
        if len({v.key for v in self.values}) != len(self.values):
            raise ValueError("attribute value keys must be unique")
        return self


class TaskTemplate(StrictModel):
    title: Annotated[str, Field(min_length=1, max_length=120)]
    priority: Priority = Priority.normal
    due_in_s: int | None = Field(default=None, ge=60, le=366 * 86_400)
    requires_visit: Flag = False
    expected_duration_min: int | None = Field(
        default=None,
        ge=1,
        le=24 * 60,
        description="Lone working: minutes a visit for the report's task should take.",
    )
    assignee_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=20,
        description="A named team of field workers; empty = the team pool.",
    )


class ServiceCreate(StrictModel):
    code: ServiceCode
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    group: Annotated[str, Field(max_length=100)] = ""
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=30
    )
    attributes: list[AttributeDef] = Field(default_factory=list, max_length=MAX_ATTRIBUTES)
    place_categories: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=20,
        description="Reports go to the nearest place of these categories within match_within_m.",
    )
    match_within_m: float = Field(default=50.0, ge=0, le=5000)
    task: TaskTemplate
    active: Flag = True

    @model_validator(mode="after")
    def _unique_attribute_codes(self) -> Self:
        codes = [a.code for a in self.attributes]
        if len(set(codes)) != len(codes):
            raise ValueError("attribute codes must be unique")
        return self


class ServiceUpdate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    group: Annotated[str, Field(max_length=100)] | None = None
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=30
    )
    attributes: list[AttributeDef] | None = Field(default=None, max_length=MAX_ATTRIBUTES)
    place_categories: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=20
    )
    match_within_m: float | None = Field(default=None, ge=0, le=5000)
    task: TaskTemplate | None = None
    active: Flag | None = None

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.attributes is not None:
            codes = [a.code for a in self.attributes]
            if len(set(codes)) != len(codes):
                raise ValueError("attribute codes must be unique")
        return self


class ServiceRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    description: str
    group: str
    keywords: list[str]
    attributes: list[dict[str, Any]]
    place_categories: list[str]
    match_within_m: float
    task: TaskTemplate
    active: bool
    created_at: datetime
    updated_at: datetime


class ApiKeyCreate(StrictModel):
    label: Annotated[str, Field(min_length=1, max_length=100)]
    rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    label: str
    rate_per_minute: int
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="Shown this once; only its SHA-256 is stored.")


class SettingsRead(BaseModel):
    jurisdiction_id: str = Field(description="The organisation's slug, as clients send it.")
    public_read: bool
    endpoint: str


class SettingsUpdate(StrictModel):
    public_read: Flag


class ReportRead(BaseModel):
    """A report as staff see it: the GeoReport fields plus the contact fields."""

    service_request_id: uuid.UUID
    service_code: str
    status: str
    task_id: uuid.UUID | None
    task_status: str | None
    geofence_id: uuid.UUID | None
    duplicate_of: uuid.UUID | None
    lat: float
    long: float
    address_string: str | None
    description: str
    media_url: str | None
    attributes: dict[str, Any]
    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    account_id: str | None
    device_id: uuid.UUID | None
    requested_datetime: datetime
    updated_datetime: datetime
