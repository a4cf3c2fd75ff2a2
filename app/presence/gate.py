"""Whether a field worker may be located at the times of their fixes (docs/tasks.md, "Shifts").

The rule belongs to the shifts domain (`app.shifts.service.tracking_gate`), which sits above
presence; the composition root hands it over as `app.state.staff_location_gate`, and the ping
routes (`POST /v1/pings`, the GPS-app ingest routes) ask it before anything is stored.
Residents' fixes never reach it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.presence.models import SubjectKind
from app.presence.service import PingInput, Subject

# (session, subject, fix times) -> one flag per time: may this worker be located then?
# Raises the shifts domain's `OffShift` (409 `off-shift`) when they may not be located now.
StaffGate = Callable[[AsyncSession, Subject, Sequence[datetime]], Awaitable[list[bool]]]

OFF_SHIFT = "off-shift"


async def admit(
    request: Request, session: AsyncSession, subject: Subject, pings: list[PingInput]
) -> tuple[list[PingInput], list[dict[str, Any]]]:
    """The fixes that may be stored, and those refused (`off-shift`, taken outside a shift or
    while paused); a worker who may not be located now gets 409 and nothing is stored."""
    if subject.kind is not SubjectKind.staff:
        return pings, []
    gate: StaffGate = request.app.state.staff_location_gate
    allowed = await gate(session, subject, [p.recorded_at for p in pings])
    kept = [p for p, ok in zip(pings, allowed, strict=True) if ok]
    refused = [
        {"id": p.id, "reason": OFF_SHIFT} for p, ok in zip(pings, allowed, strict=True) if not ok
    ]
    return kept, refused
