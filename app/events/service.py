"""Record events: the one way every source (ping, check-in, task, offer, broadcast, report) hands
its events to whatever reacts to them (notification rules, webhooks).

`record` runs every registered hook in the caller's transaction, so whatever a hook writes (outbox
rows, decisions) commits with the events or not at all. Storing the source's own rows (the
presence event log, task transitions, redemptions) stays with the source; this is the fan-out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.pace import breathe
from app.events.types import Event

# hook(session, events, settings) → an optional result, returned by `record` under the hook's name
EventHook = Callable[[AsyncSession, list[Event], Settings | None], Awaitable[Any]]
_hooks: dict[str, EventHook] = {}


def register_hook(name: str, hook: EventHook) -> None:
    """Run `hook` for every recorded batch (idempotent per name; later hooks run later)."""
    _hooks[name] = hook


def unregister_hook(name: str) -> None:
    _hooks.pop(name, None)


def hook_names() -> list[str]:
    return list(_hooks)


async def record(
    session: AsyncSession, events: list[Event], settings: Settings | None = None
) -> dict[str, Any]:
    """Run every hook on `events` in the caller's transaction; returns each hook's result.

    Never commits. An exception in a hook propagates (the transaction fails as a whole).
    """
    results: dict[str, Any] = {}
    if not events:
        return results
    for name, hook in list(_hooks.items()):
        results[name] = await hook(session, events, settings)
    return results


def presence_hook(
    settings: Settings | None,
) -> Callable[[AsyncSession, list[Any]], Awaitable[None]]:
    """What a ping batch hands its new `presence_events` rows to (`PingGroups(on_events=...)`,
    the ping evaluator): the pipeline, as every other source's events."""

    async def hook(session: AsyncSession, rows: list[Any]) -> None:
        events = []
        for r in rows:
            await breathe()  # an evaluated set's hundreds of events (app/core/pace.py)
            events.append(Event.from_presence(r))
        await record(session, events, settings)

    return hook
