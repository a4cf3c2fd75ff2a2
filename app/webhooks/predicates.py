"""Which endpoints want an event: written once, used by the fan-out and the check-in context."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, literal_column

from app.webhooks.models import EndpointStatus


def patterns_for(event_type: str) -> list[str]:
    """The subscriptions that match `event_type`: itself, `<prefix>.*` and `*`."""
    prefix = event_type.split(".", 1)[0]
    return [event_type, f"{prefix}.*", "*"]


def matches(subscribed: list[str], event_type: str) -> bool:
    return any(p in subscribed for p in patterns_for(event_type))


def wants(endpoints: Any, event_type: str) -> ColumnElement[bool]:
    """An enabled endpoint (of the `webhook_endpoints` table or alias) subscribed to the type.

    `event_type` is one of ours (`app.events.types.EventType`), never user input: its patterns
    are written into the statement as an array literal so raw statements can render it."""
    array = ", ".join(f"'{p}'" for p in patterns_for(event_type))
    return and_(
        endpoints.c.status == EndpointStatus.enabled.value,
        endpoints.c.event_types.op("&&")(literal_column(f"ARRAY[{array}]::varchar[]")),
    )
